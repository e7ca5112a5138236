"""The compiled variant kernels (csrc/variant_bptt.cpp, cell.h's variant rows) against the Python
declaration's hand BPTT (variant_bptt.py), forward and every gradient, float64 and float32; and the
layers on the compiled path against the readable loop. The extension is part of the deliverable:
these tests fail, not skip, when it is not built."""

from __future__ import annotations

import contextlib

import pytest
import torch
from test_variants import BATCH_SIZES, VARIANTS, grads_of, leaves, make, masks

import lstmbyhand
from lstmbyhand.nn import native, variant_bptt
from lstmbyhand.nn.variant_ops import variant_lstm_sequence
from lstmbyhand.nn.variants import CellOptions, VariantWeights

TOLERANCE = {torch.float64: 1e-12, torch.float32: 2e-5}


def test_the_compiled_variant_kernels_are_chosen_on_cpu():
    assert native.built(), "lstmbyhand.nn._C is not built: run scripts/setup.sh"
    assert variant_bptt.kernels_for(torch.zeros(1)) is not variant_bptt
    with native.python_kernels_only():
        assert variant_bptt.kernels_for(torch.zeros(1)) is variant_bptt


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_compiled_equals_the_python_declaration(name, dtype):
    v = VARIANTS[name]
    for P, regularized, batch_sizes, reverse in [
        (3, False, None, False),
        (2, True, BATCH_SIZES, True),
    ]:
        x, h0, c0, w = make(v, P, dtype=dtype)
        m = masks(P, regularized, dtype=dtype)
        inputs = leaves(x, h0, c0, w)
        compiled = variant_lstm_sequence(x, h0, c0, w, v, m, batch_sizes, reverse)
        with native.python_kernels_only():
            python = variant_lstm_sequence(x, h0, c0, w, v, m, batch_sizes, reverse)
        atol = TOLERANCE[dtype]
        for a, b in zip(compiled, python, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=atol)
        for a, b in zip(grads_of(compiled, inputs), grads_of(python, inputs), strict=True):
            torch.testing.assert_close(
                a, b, rtol=0, atol=10 * atol * max(1.0, b.abs().max().item())
            )


def test_a_bidirectional_stack_of_variants_on_the_compiled_path_equals_the_readable_loop():
    torch.manual_seed(0)
    kw = {"peephole": True, "layer_norm": True, "coupled": True, "zoneout": (0.1, 0.2)}
    lstm = lstmbyhand.LSTM(3, 5, 2, bidirectional=True, recurrent_dropout=0.3, **kw).double()
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    results = []
    for backend in ("bptt", "reference"):
        lstm.backend = backend
        torch.manual_seed(5)  # the same masks for both
        out, (h_n, c_n) = lstm(x)
        loss = out.sum() + h_n.pow(2).sum() + c_n.sum()
        results.append([out, *torch.autograd.grad(loss, list(lstm.parameters()))])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)


REGULARIZERS = {  # (recurrent_dropout, zoneout): each alone, both, neither (the kernels branch on each)
    "none": (0.0, 0.0),
    "recurrent_dropout": (0.4, 0.0),
    "zoneout": (0.0, (0.3, 0.5)),
    "both": (0.4, (0.3, 0.5)),
}


@pytest.mark.parametrize("regularizers", list(REGULARIZERS))
@pytest.mark.parametrize("name", list(VARIANTS))
def test_the_16_wide_rows_equal_the_python_declaration(name, regularizers):
    """H = 20: cell.h's AVX-512 rows (16 units a time, where the build targets them) and their scalar
    tail (4 units), float32, with and without each regularizer, against the PyTorch-op kernels."""
    v = VARIANTS[name]
    T_, B_, I_, H_ = 5, 4, 3, 20
    g = torch.Generator().manual_seed(7)

    def rand(*shape):
        return torch.randn(*shape, generator=g).requires_grad_()

    ln = (rand(4 * H_), rand(4 * H_), rand(H_), rand(H_)) if v.layer_norm else (None,) * 4
    w = VariantWeights(
        rand(4 * H_, I_), rand(4 * H_, H_), rand(4 * H_), None, rand(3 * H_) if v.peephole else None,
        *ln,
    )  # fmt: skip
    x, h0, c0 = rand(T_, B_, I_), rand(B_, H_), rand(B_, H_)
    torch.manual_seed(3)
    p_rec, zoneout = REGULARIZERS[regularizers]
    opts = CellOptions.of(recurrent_dropout=p_rec, zoneout=zoneout)
    m = opts.masks(torch.zeros(()), T_, B_, H_, H_, training=True)
    inputs = leaves(x, h0, c0, w)
    compiled = variant_lstm_sequence(x, h0, c0, w, v, m)
    with native.python_kernels_only():
        python = variant_lstm_sequence(x, h0, c0, w, v, m)
    for a, b in zip(compiled, python, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=2e-5 * max(1.0, b.abs().max().item()))
    for a, b in zip(grads_of(compiled, inputs), grads_of(python, inputs), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=2e-4 * max(1.0, b.abs().max().item()))


@pytest.mark.parametrize("used", [0, 1, 2])
def test_gradients_when_only_one_result_is_used(used):
    """The operator leaves unused gradients unmaterialized (None, not zeros); the result must still be
    autograd's through the readable loop (variant_sequence) when only output, h_n or c_n feeds the
    loss."""
    torch.manual_seed(3)
    lstm = lstmbyhand.LSTM(3, 4, peephole=True, layer_norm=True).double()
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    grads = []
    for backend in ("bptt", "reference"):
        lstm.backend = backend
        out, (h_n, c_n) = lstm(x)
        loss = (out, h_n, c_n)[used].pow(2).sum()
        grads.append(torch.autograd.grad(loss, [x, *lstm.parameters()]))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_layer_norm_statistics_hold_when_the_mean_is_far_from_zero():
    """The 16-wide statistics take the mean and variance of a row in one pass (shifted by the row's
    first value): with W x_t's rows near 1000 ± 1 (mean / std about 1000), float32, they still match float64's LN to float32
    rounding (an unshifted Σa² / n - mean² would lose every digit of the variance there)."""
    v = VARIANTS["layer_norm"]
    T_, B_, I_, H_ = 4, 3, 2, 16
    g = torch.Generator().manual_seed(11)
    w64 = VariantWeights(
        torch.randn(4 * H_, I_, generator=g, dtype=torch.float64) * 1e-3 + 1.0,  # all near 1
        torch.randn(4 * H_, H_, generator=g, dtype=torch.float64),
        torch.randn(4 * H_, generator=g, dtype=torch.float64), None, None,
        torch.rand(4 * H_, generator=g, dtype=torch.float64) + 0.5,
        torch.rand(4 * H_, generator=g, dtype=torch.float64) + 0.5,
        torch.rand(H_, generator=g, dtype=torch.float64) + 0.5,
        torch.randn(H_, generator=g, dtype=torch.float64),
    )  # fmt: skip
    x64 = 500.0 + torch.randn(T_, B_, I_, generator=g, dtype=torch.float64) * 5.0
    h0 = torch.zeros(B_, H_, dtype=torch.float64)
    m = masks(H_, False, dtype=torch.float64)
    with native.python_kernels_only():
        want = variant_lstm_sequence(x64, h0, h0, w64, v, m)
    w32 = VariantWeights(*(None if t is None else t.float() for t in w64))
    m32 = type(m)(*(None if t is None else t.float() for t in m))
    got = variant_lstm_sequence(x64.float(), h0.float(), h0.float(), w32, v, m32)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a.double(), b, rtol=0, atol=1e-3)


@pytest.mark.parametrize("kernels", ["compiled", "python"])
def test_without_a_gradient_for_x_the_backward_skips_dx_and_keeps_the_rest(kernels):
    """x without requires_grad (a first layer's data): the backward gets variant_bptt.NO_DX, returns
    an empty dx, and every other gradient equals the one computed with dx."""
    v = VARIANTS["peephole+coupled+layer_norm"]
    x, h0, c0, w = make(v, 3, dtype=torch.float64)
    m = masks(3, True, dtype=torch.float64)
    x = x.detach()
    inputs = leaves(None, h0, c0, w)
    runs = []
    with native.python_kernels_only() if kernels == "python" else contextlib.nullcontext():
        for x_in in (x, x.clone().requires_grad_()):
            out = variant_lstm_sequence(x_in, h0, c0, w, v, m, BATCH_SIZES, True)
            runs.append(grads_of(out, inputs))
            if not x_in.requires_grad:
                assert x_in.grad is None
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    k = variant_bptt if kernels == "python" else variant_bptt.kernels_for(x)
    T, B, _ = x.shape
    P = h0.shape[1]
    fwd = k.forward(x, h0, c0, *w, *m, None, False, v.flags)
    d_out, d_h, d_c = (
        torch.randn(T, B, P, dtype=x.dtype),
        torch.zeros_like(h0),
        torch.zeros_like(c0),
    )
    weights = (w.weight_ih, w.weight_hh, w.weight_hr, w.weight_peephole, w.ln_weight_ih,
               w.ln_weight_hh, w.ln_weight_c)  # fmt: skip
    args = (d_out, d_h, d_c, x, *weights, *m, None, False)
    full = k.backward(*args, v.flags, *fwd[3:])
    skipped = k.backward(*args, v.flags | variant_bptt.NO_DX, *fwd[3:])
    assert full[0].shape == x.shape and skipped[0].numel() == 0
    for a, b in zip(full[1:], skipped[1:], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_eager_autograd_runs_the_function_and_equals_the_operators_registration(monkeypatch):
    """Plain eager autograd goes through variant_ops._EagerDirection (no per-call schema binding);
    its results and gradients equal the operator's own autograd registration's exactly."""
    from lstmbyhand.nn import variant_ops

    v = VARIANTS["peephole+coupled+layer_norm"]
    x, h0, c0, w = make(v, 3, dtype=torch.float64)
    m = masks(3, True, dtype=torch.float64)
    inputs = leaves(x, h0, c0, w)
    eager = variant_lstm_sequence(x, h0, c0, w, v, m, BATCH_SIZES, True)
    assert type(eager[0].grad_fn).__name__ == "_EagerDirectionBackward"
    monkeypatch.setattr(variant_ops, "_eager", lambda tensors: False)
    registered = variant_lstm_sequence(x, h0, c0, w, v, m, BATCH_SIZES, True)
    assert type(registered[0].grad_fn).__name__ != "_EagerDirectionBackward"
    for a, b in zip(eager, registered, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(grads_of(eager, inputs), grads_of(registered, inputs), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize(
    "name", ["NIG", "NFG", "NOG", "coupled", "NIG+NFG+NOG", "coupled+NOG+NIAF"]
)
def test_removed_gates_products_are_skipped_and_their_weights_get_no_gradient(name):
    """H = 64: each gate's block of 4H is a whole column panel, which the compiled forward skips for
    a removed gate (and the backward's products skip its zero dz). Results and gradients equal the
    PyTorch-op kernels'; the removed gates' weight rows get exactly zero gradient, as through the
    readable loop (whose gate ignores them)."""
    v = VARIANTS[name]
    T_, B_, I_, H_ = 3, 5, 4, 64
    g = torch.Generator().manual_seed(13)

    def rand(*shape):
        return (torch.randn(*shape, generator=g) * 0.3).requires_grad_()

    w = VariantWeights(rand(4 * H_, I_), rand(4 * H_, H_), rand(4 * H_))
    x, h0, c0 = rand(T_, B_, I_), rand(B_, H_), rand(B_, H_)
    m = CellOptions().masks(x, T_, B_, H_, H_, training=False)
    inputs = leaves(x, h0, c0, w)
    compiled = variant_lstm_sequence(x, h0, c0, w, v, m, None, False)
    with native.python_kernels_only():
        python = variant_lstm_sequence(x, h0, c0, w, v, m, None, False)
    for a, b in zip(compiled, python, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=2e-5)
    grads = grads_of(compiled, inputs)
    for a, b in zip(grads, grads_of(python, inputs), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=2e-4 * max(1.0, b.abs().max().item()))
    removed = {"input_gate": 0, "forget_gate": 1, "output_gate": 3}
    blocks = [removed[a] for a in v.ablate if a in removed] + [1] * v.coupled
    d_w_ih, d_w_hh = grads[3], grads[4]
    assert blocks
    for q in blocks:
        assert d_w_ih[q * H_ : (q + 1) * H_].abs().max() == 0
        assert d_w_hh[q * H_ : (q + 1) * H_].abs().max() == 0


@pytest.mark.parametrize("name", ["plain", "layer_norm", "peephole+coupled+layer_norm"])
@pytest.mark.parametrize(
    ("T_", "B_", "H_", "threads"),
    [
        (7, 100, 4, 1),  # one row group: the weight gradients every 2 steps, dz / da_h a ring of 2
        (3, 32, 64, 2),  # two row groups (threads): the weight gradients once, over all steps
    ],
)
def test_the_backward_weight_gradients_in_step_chunks_and_row_groups_equal_the_declaration(
    name, T_, B_, H_, threads
):
    """The compiled backward multiplies da_x and da_h into dW, dU and dx every C steps (C B about
    256 rows) with one row group, through slots reused for later steps, and once after the loop with
    several: both, whole, packed (rows that stop running, whose reused slots must read zero) and
    reversed, equal the Python kernels (variant_bptt) in float64, every result."""
    v = VARIANTS[name]
    g = torch.Generator().manual_seed(5)

    def rand(*shape):
        return torch.randn(*shape, dtype=torch.float64, generator=g)

    I_, G_ = 3, 4 * H_
    ln = (rand(G_), rand(G_), rand(H_), rand(H_)) if v.layer_norm else (None,) * 4
    weights = (
        rand(G_, I_),
        rand(G_, H_),
        rand(G_),
        None,
        rand(3 * H_) if v.peephole else None,
        *ln,
    )
    x, h0, c0 = rand(T_, B_, I_), rand(B_, H_), rand(B_, H_)
    d_out, d_hn, d_cn = rand(T_, B_, H_), rand(B_, H_), rand(B_, H_)
    sizes = torch.linspace(B_, 1, T_).round().long()  # non-increasing, B_ down to 1
    compiled = variant_bptt.kernels_for(x)
    assert compiled is not variant_bptt
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for batch_sizes, reverse in [(None, False), (sizes, False), (sizes, True)]:
            results = []
            for kernels in (compiled, variant_bptt):
                tail = (None, None, None, batch_sizes, reverse, v.flags)  # no masks
                fwd = kernels.forward(x, h0, c0, *weights, *tail)
                back_weights = (*weights[:2], *weights[3:8])  # no bias, no ln_bias_c
                bwd = kernels.backward(d_out, d_hn, d_cn, x, *back_weights, *tail, *fwd[3:])
                results.append((*fwd[:3], *bwd))
            for a, b in zip(*results, strict=True):
                scale = max(1.0, b.abs().amax().item() if b.numel() else 1.0)
                torch.testing.assert_close(a, b, rtol=0, atol=1e-11 * scale)
    finally:
        torch.set_num_threads(previous)
