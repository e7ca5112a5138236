"""The compiled kernels (`lstmbyhand.nn._C`) against the PyTorch ops of bptt.py, the readable loop,
torch.nn.LSTM, and torch.optim.Adam; float64 to rounding, float32 to ~1e-5.

The fast path is part of the deliverable: when the extension is not built, these tests fail (CI builds
it in scripts/setup.sh) instead of skipping.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from helpers import torch_threads
from torch import nn

from lstmbyhand.nn import bptt, native, ops
from lstmbyhand.nn.sequence import reference_sequence

TOL = {torch.float64: {"atol": 1e-12, "rtol": 1e-10}, torch.float32: {"atol": 1e-5, "rtol": 1e-4}}


@pytest.fixture(scope="module")
def compiled():
    if not native.built():
        pytest.fail("the compiled fast path lstmbyhand.nn._C is not built: run scripts/setup.sh")
    if not native.available():
        pytest.fail("the compiled fast path is turned off (LSTMBYHAND_NATIVE=0)")
    return native.compiled()


def test_extension_is_built():
    assert native.built(), (
        "lstmbyhand.nn._C is not built: run scripts/setup.sh (needs a C++ compiler)"
    )
    assert bptt.kernels_for(torch.zeros(1)) is native.compiled()


def lengths_to_batch_sizes(lengths: list[int]) -> torch.Tensor:
    """PackedSequence's batch_sizes for lengths sorted longest first."""
    return torch.tensor([sum(n > t for n in lengths) for t in range(lengths[0])], dtype=torch.int64)


def with_threads(threads: int, fn):
    """fn() with torch's thread count set to `threads`, restored after."""
    with torch_threads(threads):
        return fn()


def assert_forwards_match(ours, ours_inference, expected, dtype) -> None:
    """forward (with its cache) and forward_inference against bptt.forward's outputs."""
    for a, b in zip(ours, expected, strict=True):
        torch.testing.assert_close(a, b, **TOL[dtype])
    for a, b in zip(ours_inference, expected[:3], strict=True):
        torch.testing.assert_close(a, b, **TOL[dtype])


def assert_kernels_match_ops(compiled, args, grads_in, threads: int, dtype) -> None:
    """forward, forward_inference and backward on `threads` threads against bptt's PyTorch ops.
    Float32 weight gradients sum T B rows in another order than torch's: rounding of ~1e-7 relative
    to the largest terms (float64 shows that the sums themselves agree to 1e-10)."""
    x, _, _, w_ih, w_hh, _, w_hr, batch_sizes, reverse = args
    weights = (x, w_ih, w_hh, w_hr, batch_sizes, reverse)

    def run():
        ours = compiled.forward(*args)
        grads = compiled.backward(*grads_in, *weights, *ours[3:])
        return ours, compiled.forward_inference(*args), grads

    ours, ours_inference, ours_grads = with_threads(threads, run)
    expected = bptt.forward(*args)
    assert_forwards_match(ours, ours_inference, expected, dtype)
    expected_grads = bptt.backward(*grads_in, *weights, *expected[3:])
    grad_tol = TOL[dtype] if dtype == torch.float64 else {"atol": 1e-4, "rtol": 1e-4}
    for a, b in zip(ours_grads, expected_grads, strict=True):
        torch.testing.assert_close(a, b, **grad_tol)


def make_case(T, B, I, H, P, bias, packed, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype) * 0.5

    x = rand(T, B, I)
    h0, c0 = rand(B, P or H), rand(B, H)
    w_ih, w_hh = rand(4 * H, I), rand(4 * H, P or H)
    b_ih, b_hh = (rand(4 * H), rand(4 * H)) if bias else (None, None)
    w_hr = rand(P, H) if P else None
    batch_sizes = None
    if packed:
        lengths = sorted(torch.randint(1, T + 1, (B,), generator=g).tolist(), reverse=True)
        lengths[0] = T
        batch_sizes = lengths_to_batch_sizes(lengths)
    return x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes


CASES = [  # T, B, I, H, P (0: no projection), bias, packed
    (1, 1, 1, 1, 0, True, False),
    (4, 2, 1, 1, 0, True, False),
    (5, 3, 4, 6, 0, False, False),
    (7, 5, 3, 8, 0, True, True),
    (6, 4, 5, 7, 3, True, False),
    (6, 4, 5, 7, 3, False, True),
    (3, 1, 2, 5, 2, True, True),
    (9, 33, 17, 40, 0, True, True),  # wide enough to split rows across threads
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_kernels_equal_pytorch_ops(compiled, case, reverse, dtype):
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes = make_case(*case, dtype=dtype)
    bias = None if b_ih is None else b_ih + b_hh
    args = (x, h0, c0, w_ih, w_hh, bias, w_hr, batch_sizes, reverse)
    ours, theirs = compiled.forward(*args), bptt.forward(*args)
    assert len(ours) == len(theirs) == 7  # output, h_n, c_n and the same cache
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, **TOL[dtype])
    for a, b in zip(compiled.forward_inference(*args), theirs[:3], strict=True):
        torch.testing.assert_close(a, b, **TOL[dtype])

    g = torch.Generator().manual_seed(1)
    d_output = torch.randn(theirs[0].shape, generator=g, dtype=dtype)
    if batch_sizes is not None:  # outputs of rows that did not run are not outputs
        for t, n in enumerate(batch_sizes.tolist()):
            d_output[t, n:] = 0
    d_hn = torch.randn(theirs[1].shape, generator=g, dtype=dtype)
    d_cn = torch.randn(theirs[2].shape, generator=g, dtype=dtype)
    grad_args = (d_output, d_hn, d_cn, x, w_ih, w_hh, w_hr, batch_sizes, reverse)
    ours = compiled.backward(*grad_args, *theirs[3:])
    theirs = bptt.backward(*grad_args, *theirs[3:])
    assert len(ours) == 7
    for a, b in zip(ours, theirs, strict=True):
        if b is None:
            assert a is None
        else:
            torch.testing.assert_close(a, b, **TOL[dtype])


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("case", CASES[1:7])
def test_lstm_sequence_equals_the_readable_loop(compiled, case, reverse):
    """Values and every gradient through `ops.lstm_sequence` (native) vs `reference_sequence` + autograd."""
    tensors = make_case(*case, dtype=torch.float64, seed=2)
    *inputs, batch_sizes = tensors
    leaves = [None if t is None else t.clone().requires_grad_() for t in inputs]
    refs = [None if t is None else t.clone().requires_grad_() for t in inputs]
    out = ops.lstm_sequence(*leaves, batch_sizes=batch_sizes, reverse=reverse)
    ref = reference_sequence(*refs, batch_sizes=batch_sizes, reverse=reverse)[:3]
    weights = [torch.randn(t.shape, dtype=torch.float64) for t in ref]
    sum(((a * w).sum() for a, w in zip(out, weights, strict=True))).backward()
    sum(((a * w).sum() for a, w in zip(ref, weights, strict=True))).backward()
    for a, b in zip(out, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)
    for a, b in zip(leaves, refs, strict=True):
        if a is not None:
            torch.testing.assert_close(a.grad, b.grad, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("case", [(3, 2, 2, 3, 0, True, True), (4, 3, 2, 4, 2, True, False)])
def test_gradcheck_with_native_kernels(compiled, case):
    *inputs, batch_sizes = make_case(*case, dtype=torch.float64, seed=4)
    leaves = tuple(None if t is None else t.requires_grad_() for t in inputs)
    for reverse in (False, True):
        assert torch.autograd.gradcheck(
            lambda *a, r=reverse: ops.lstm_sequence(*a, batch_sizes=batch_sizes, reverse=r),
            leaves,
        )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("proj_size", [0, 3])
def test_bidirectional_layer_equals_nn_lstm(compiled, dtype, proj_size):
    """An independent reference: nn.LSTM's values and gradients from the same weights."""
    torch.manual_seed(5)
    T, B, I, H = 6, 4, 3, 5
    ref = nn.LSTM(I, H, bidirectional=True, proj_size=proj_size, dtype=dtype)
    x = torch.randn(T, B, I, dtype=dtype, requires_grad=True)
    P = proj_size or H
    h0 = torch.randn(2, B, P, dtype=dtype)
    c0 = torch.randn(2, B, H, dtype=dtype)
    out_ref, (hn_ref, cn_ref) = ref(x, (h0, c0))
    params = {name: p.detach().clone().requires_grad_() for name, p in ref.named_parameters()}
    outs, hns, cns = [], [], []
    for d, suffix in enumerate(["_l0", "_l0_reverse"]):
        out, hn, cn = ops.lstm_sequence(
            x,
            h0[d],
            c0[d],
            params["weight_ih" + suffix],
            params["weight_hh" + suffix],
            params["bias_ih" + suffix],
            params["bias_hh" + suffix],
            params.get("weight_hr" + suffix),
            reverse=d == 1,
        )
        outs.append(out), hns.append(hn), cns.append(cn)
    out, hn, cn = torch.cat(outs, 2), torch.stack(hns), torch.stack(cns)
    tol = TOL[dtype]
    torch.testing.assert_close(out, out_ref, **tol)
    torch.testing.assert_close(hn, hn_ref, **tol)
    torch.testing.assert_close(cn, cn_ref, **tol)
    w = torch.randn(out.shape, dtype=dtype)
    dx = torch.autograd.grad((out * w).sum() + hn.sum() + cn.sum(), [x, *params.values()])
    dx_ref = torch.autograd.grad(
        (out_ref * w).sum() + hn_ref.sum() + cn_ref.sum(), [x, *ref.parameters()]
    )
    for a, b in zip(dx, dx_ref, strict=True):
        torch.testing.assert_close(a, b, **tol)


def torch_adam_loop(batches, params, lr, max_epoch, tol, patience):
    """The plain PyTorch loop fit_adam compiles: readable LSTM + autograd + torch.optim.Adam."""
    params = [p.clone().requires_grad_() for p in params]
    opt = torch.optim.Adam(params, lr=lr)
    losses, best, since_best = [], float("inf"), 0
    for _ in range(max_epoch):
        batch_losses = []
        for x, y in batches:
            B, T, _ = x.shape
            H = params[1].shape[1]
            zeros = x.new_zeros(B, H)
            _, h_n, _, _ = reference_sequence(x.transpose(0, 1), zeros, zeros, *params[:4])
            pred = h_n if len(params) == 4 else h_n @ params[4].T + params[5]  # (B, O)
            loss = nn.functional.mse_loss(pred, y.reshape(pred.shape))
            opt.zero_grad()
            loss.backward()
            opt.step()
            batch_losses.append(loss.item())
        losses.append(sum(batch_losses) / len(batch_losses))
        if losses[-1] < best - tol:
            best, since_best = losses[-1], 0
        else:
            since_best += 1
        if tol >= 0 and since_best >= patience:
            break
    state = [opt.state[p] for p in params]
    return torch.tensor(losses, dtype=torch.float64), params, state


def make_fit_problem(I, H, O, dtype, seed=7):
    g = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=g, dtype=dtype) for s in [(4 * H, I), (4 * H, H), (4 * H,)]]
    params.append(torch.randn(4 * H, generator=g, dtype=dtype))
    if O:
        params += [
            torch.randn(O, H, generator=g, dtype=dtype),
            torch.randn(O, generator=g, dtype=dtype),
        ]
    out = O or H
    batches = [
        (
            torch.randn(B, T, I, generator=g, dtype=dtype),
            torch.rand(B, out, generator=g, dtype=dtype),
        )
        for B, T in [(1, 4), (3, 4), (2, 6)]
    ]
    return params, batches


@pytest.mark.parametrize("I, H, O", [(1, 1, 0), (4, 1, 0), (2, 3, 0), (1, 2, 1), (3, 4, 2)])
def test_fit_adam_equals_torch_adam(compiled, I, H, O):
    params, batches = make_fit_problem(I, H, O, torch.float64)
    lr, epochs = 0.01, 100  # 300 Adam steps
    ref_losses, ref_params, ref_state = torch_adam_loop(batches, params, lr, epochs, -1.0, 0)
    ours = [p.clone() for p in params]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    xs, ys = [x for x, _ in batches], [y for _, y in batches]
    losses, step = compiled.fit_adam(xs, ys, ours, m, v, 0, lr, 0.9, 0.999, 1e-8, epochs, -1.0, 0)
    assert step == epochs * len(batches)
    torch.testing.assert_close(losses, ref_losses, atol=1e-12, rtol=1e-10)
    for a, b, ma, va, s in zip(ours, ref_params, m, v, ref_state, strict=True):
        torch.testing.assert_close(a, b.detach(), atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(ma, s["exp_avg"], atol=1e-12, rtol=1e-10)
        torch.testing.assert_close(va, s["exp_avg_sq"], atol=1e-12, rtol=1e-10)


def test_fit_adam_resumes_and_stops_early(compiled):
    params, batches = make_fit_problem(2, 3, 1, torch.float64)
    xs, ys = [x for x, _ in batches], [y for _, y in batches]
    ref_losses, ref_params, _ = torch_adam_loop(batches, params, 0.05, 60, 1e-3, 5)
    ours = [p.clone() for p in params]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    first, step = compiled.fit_adam(xs, ys, ours, m, v, 0, 0.05, 0.9, 0.999, 1e-8, 10, -1.0, 0)
    assert step == 30 and len(first) == 10
    # Resuming with the moments and step carried over continues the same trajectory; the stop
    # rule restarts (best = inf), so compare the trajectory, not the stop epoch, across the split.
    rest, step = compiled.fit_adam(xs, ys, ours, m, v, step, 0.05, 0.9, 0.999, 1e-8, 50, -1.0, 0)
    full = torch.cat([first, rest])
    whole = [p.clone() for p in params]
    mw = [torch.zeros_like(p) for p in params]
    vw = [torch.zeros_like(p) for p in params]
    all_losses, _ = compiled.fit_adam(xs, ys, whole, mw, vw, 0, 0.05, 0.9, 0.999, 1e-8, 60, -1.0, 0)
    torch.testing.assert_close(full, all_losses, atol=0, rtol=0)
    # Early stop: the same epochs as the Python rule.
    stopped = [p.clone() for p in params]
    ms = [torch.zeros_like(p) for p in params]
    vs = [torch.zeros_like(p) for p in params]
    losses, _ = compiled.fit_adam(xs, ys, stopped, ms, vs, 0, 0.05, 0.9, 0.999, 1e-8, 60, 1e-3, 5)
    assert len(losses) == len(ref_losses) < 60
    torch.testing.assert_close(losses, ref_losses, atol=1e-12, rtol=1e-10)


def test_fit_adam_float32_close_to_float64(compiled):
    params, batches = make_fit_problem(1, 2, 1, torch.float64)
    results = []
    for dtype in (torch.float64, torch.float32):
        ps = [p.to(dtype, copy=True) for p in params]
        m = [torch.zeros_like(p) for p in ps]
        v = [torch.zeros_like(p) for p in ps]
        xs = [x.to(dtype) for x, _ in batches]
        ys = [y.to(dtype) for _, y in batches]
        losses, _ = compiled.fit_adam(xs, ys, ps, m, v, 0, 0.01, 0.9, 0.999, 1e-8, 50, -1.0, 0)
        results.append(losses)
    torch.testing.assert_close(results[1], results[0], atol=1e-4, rtol=1e-3)


def test_errors_name_the_argument(compiled):
    x = torch.zeros(3, 2, 4)
    with pytest.raises(RuntimeError, match="weight_hh: expected dtype"):
        compiled.forward(
            x, torch.zeros(2, 5), torch.zeros(2, 5), torch.zeros(20, 4), torch.zeros(20, 5).double(),
            None, None, None, False,
        )  # fmt: skip
    with pytest.raises(RuntimeError, match="batch_sizes: expected 3 entries"):
        compiled.forward(
            x, torch.zeros(2, 5), torch.zeros(2, 5), torch.zeros(20, 4), torch.zeros(20, 5),
            None, None, torch.tensor([2, 1]), False,
        )  # fmt: skip
    p = [torch.zeros(4, 1), torch.zeros(4, 1), torch.zeros(4), torch.zeros(4)]
    z = [torch.zeros_like(t) for t in p]
    with pytest.raises(RuntimeError, match=r"xs\[0\]: expected \(B, T, 1\)"):
        compiled.fit_adam(
            [torch.zeros(1, 4, 2)], [torch.zeros(1)], p, z, z, 0, 0.1, 0.9, 0.999, 1e-8, 1, -1.0, 0
        )


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_inference_on_wide_steps(compiled, reverse, packed):
    """forward_inference on wide steps (B = 64, 4H = 1024: many 64-column weight panels per step)."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, _, batch_sizes = make_case(
        11, 64, 3, 256, 0, True, packed, torch.float64, seed=6
    )  # float64: the blocks are the same code in both dtypes, and rounding does not hide an error
    args = (x, h0, c0, w_ih, w_hh, b_ih + b_hh, None, batch_sizes, reverse)
    for a, b in zip(compiled.forward_inference(*args), bptt.forward(*args)[:3], strict=True):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_threads_split_batch_rows(compiled, reverse, packed):
    """Mid-sized steps run with the batch rows split into groups, one per thread, each group through
    all its steps on its own (packed: groups whose rows stop early idle at later steps)."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, _, batch_sizes = make_case(
        7, 32, 3, 64, 0, True, packed, torch.float64, seed=8
    )  # 2 B 4H (I+H) >= 2^20 flops per step: split when torch has more than one thread
    args = (x, h0, c0, w_ih, w_hh, b_ih + b_hh, None, batch_sizes, reverse)
    expected = bptt.forward(*args)
    with torch_threads(2):  # (the suite runs on one: conftest.py)
        ours, ours_inference = compiled.forward(*args), compiled.forward_inference(*args)
    for a, b in zip(ours, expected, strict=True):
        torch.testing.assert_close(a, b, **TOL[torch.float64])
    for a, b in zip(ours_inference, expected[:3], strict=True):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("H", [64, 72])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_row_groups_forward_and_backward(compiled, dtype, H, reverse, packed, threads):
    """Batch rows split into groups (one per thread, 32 rows into groups of 10-11 with 3 threads) give
    the same forward, cache and gradients as the PyTorch ops, for any number of groups."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, _, batch_sizes = make_case(
        9, 32, 5, H, 0, True, packed, dtype, seed=9
    )  # 2 B 4H (I+H) >= 2^20 flops per step: split when torch has more than one thread
    args = (x, h0, c0, w_ih, w_hh, b_ih + b_hh, None, batch_sizes, reverse)
    g = torch.Generator().manual_seed(10)
    grads_in = tuple(
        torch.randn(*shape, generator=g, dtype=dtype)
        for shape in (x.shape[:2] + (H,), h0.shape, c0.shape)
    )
    assert_kernels_match_ops(compiled, args, grads_in, threads, dtype)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_paneled_weights_and_projection_in_row_groups(compiled, dtype, threads):
    """The forward multiplies by its weights in column panels of 64 (4H = 400: six full panels and one
    of 16); with a projection, forward and backward split the batch rows into groups (128 rows,
    [x_t, h_{t-1}] of 144 columns) and match the PyTorch ops, W_hr's gradient included."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, _ = make_case(
        9, 128, 128, 100, 16, True, False, dtype, seed=14
    )  # weights / 4: at full scale float32 rounding grows to ~3e-4 in 9 steps, in torch's ops as well
    args = (x, h0, c0, w_ih / 4, w_hh / 4, b_ih + b_hh, w_hr / 4, None, False)
    g = torch.Generator().manual_seed(17)
    grads_in = tuple(
        torch.randn(*shape, generator=g, dtype=dtype)
        for shape in ((9, 128, 16), (128, 16), (128, 100))
    )
    assert_kernels_match_ops(compiled, args, grads_in, threads, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_small_batch_splits_the_panels(compiled, dtype):
    """A batch too small for row groups (B = 4) with a large step (4 x 1024 by 1024 x 2048) splits
    each step's product by column panels across threads instead; forward and backward equal the ops."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, _, _ = make_case(
        3, 4, 512, 512, 0, True, False, dtype, seed=15
    )
    args = (x, h0, c0, w_ih / 8, w_hh / 8, b_ih + b_hh, None, None, False)
    g = torch.Generator().manual_seed(16)
    grads_in = (torch.randn(3, 4, 512, generator=g, dtype=dtype), torch.zeros(4, 512, dtype=dtype))
    grads_in = (*grads_in, torch.zeros(4, 512, dtype=dtype))
    assert_kernels_match_ops(compiled, args, grads_in, 2, dtype)


def test_backward_skips_dx_when_not_needed(compiled):
    """need_dx=False (x needs no gradient) returns None for dx and the same other gradients."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, _, batch_sizes = make_case(
        5, 32, 3, 64, 0, True, True, torch.float64, seed=11
    )
    args = (x, h0, c0, w_ih, w_hh, b_ih + b_hh, None, batch_sizes, False)
    output, h_n, c_n, *cache = compiled.forward(*args)
    grads_in = (torch.ones_like(output), torch.ones_like(h_n), torch.ones_like(c_n))
    rest = (x, w_ih, w_hh, None, batch_sizes, False, *cache)
    full = compiled.backward(*grads_in, *rest)
    skipped = compiled.backward(*grads_in, *rest, need_dx=False)
    assert full[0] is not None and skipped[0] is None
    for a, b in zip(skipped[1:6], full[1:6], strict=True):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


def test_prepared_weights_follow_every_update(compiled):
    """The kernels keep the weights prepared for the next call ([W U] side by side, in panels); any
    change of either part's values, in place or through .data, must be seen (the cache compares
    contents, not identity or version)."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, _, _ = make_case(
        4, 32, 3, 64, 0, True, False, torch.float32, seed=12
    )
    saved = torch.get_num_threads()
    try:
        for threads in (2, 1):  # rows split into groups, then one group
            torch.set_num_threads(threads)
            updates = (lambda w: w.mul_(0.9), lambda w: w.data.add_(0.01), lambda w: None)
            for update, weight in itertools.product(updates, (w_ih, w_hh)):
                update(weight)  # one part at a time: the other stays the same
                args = (x, h0, c0, w_ih, w_hh, b_ih + b_hh, None, None, False)
                for a, b in zip(compiled.forward(*args), bptt.forward(*args), strict=True):
                    torch.testing.assert_close(a, b, **TOL[torch.float32])
                for a, b in zip(
                    compiled.forward_inference(*args), bptt.forward(*args)[:3], strict=True
                ):
                    torch.testing.assert_close(a, b, **TOL[torch.float32])
                cache = bptt.forward(*args)[3:]
                grads_in = (torch.ones(4, 32, 64), torch.ones(32, 64), torch.ones(32, 64))
                rest = (x, w_ih, w_hh, None, None, False, *cache)
                for a, b in zip(
                    compiled.backward(*grads_in, *rest)[:6],
                    bptt.backward(*grads_in, *rest)[:6],
                    strict=True,
                ):
                    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    finally:
        torch.set_num_threads(saved)


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_vectorized_gates_saturate_like_torch(compiled, scale):
    """The 16-wide gate loop (exp polynomial, reciprocal with a Newton step) is as accurate as
    torch.sigmoid and torch.tanh in float32, also where the gates saturate (pre-activations of
    several tens): against the same inputs in float64, our float32 error is at most twice that of
    the PyTorch ops in float32 (their sums round in another order, so the two float32 results are
    compared through the float64 one rather than with each other)."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, _, _ = make_case(
        2, 8, 4, 48, 0, True, False, torch.float32, seed=13
    )  # 2 steps: with weights x30 a rounding difference grows ~7x per step (the dynamics are chaotic)
    args = (x, h0, c0, w_ih * scale, w_hh * scale, (b_ih + b_hh) * scale, None, None, False)
    exact = bptt.forward(*(a.double() if isinstance(a, torch.Tensor) else a for a in args))
    torch_f32 = bptt.forward(*args)
    for ours in (compiled.forward(*args), compiled.forward_inference(*args)):
        for a, b, e in zip(ours, torch_f32, exact, strict=False):
            ours_error = (a.double() - e).abs().max().item()
            torch_error = (b.double() - e).abs().max().item()
            assert ours_error <= 2 * torch_error + 1e-6, (ours_error, torch_error)


# -- LSTMCell's compiled step (csrc/cell_step.cpp) ------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("bias", [True, False])
def test_compiled_cell_step_is_the_python_one_to_the_bit(compiled, dtype, bias):
    """The same operators in the same order: equal values, gradients and second derivatives."""
    from lstmbyhand.nn.layers import cell_step

    torch.manual_seed(11)
    cell = nn.LSTMCell(3, 5, bias=bias, dtype=dtype)
    weights = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    x, h, c = (torch.randn(4, n, dtype=dtype, requires_grad=True) for n in (3, 5, 5))
    leaves = [x, h, c, *(w for w in weights if w is not None)]
    probe = [torch.randn(4, 5, dtype=dtype) for _ in range(2)]
    found = []
    for step in (cell_step, compiled.cell_step):
        out = step(x, h, c, *weights)
        loss = sum((t * p).sum() for t, p in zip(out, probe, strict=True))
        grads = torch.autograd.grad(loss, leaves, create_graph=True)
        second = torch.autograd.grad(sum(g.square().sum() for g in grads), leaves)
        found.append([*out, *grads, *second])
    assert all(torch.equal(a, b) for a, b in zip(*found, strict=True))


def test_lstm_cell_runs_the_compiled_step_and_nn_lstm_cells_checks(compiled, monkeypatch):
    """LSTMCell calls the compiled step (counted), whose size checks raise lstm_cell's errors."""
    import types

    import lstmbyhand

    calls = []

    def counted(*args):
        calls.append(len(args))
        return compiled.cell_step(*args)

    monkeypatch.setattr(native, "_compiled", types.SimpleNamespace(cell_step=counted))
    torch.manual_seed(12)
    ours, theirs = lstmbyhand.LSTMCell(3, 5), nn.LSTMCell(3, 5)
    ours.load_state_dict(theirs.state_dict())
    x, h = torch.randn(2, 3), torch.randn(2, 5)
    for a, b in zip(ours(x, (h, h)), theirs(x, (h, h)), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert calls == [7]
    for args in ((torch.randn(2, 4), (h, h)), (x, (torch.randn(3, 5), h)), (x, (h, x))):
        with pytest.raises(RuntimeError) as theirs_err:
            theirs(*args)
        with pytest.raises(RuntimeError) as ours_err:
            ours(*args)
        assert str(ours_err.value) == str(theirs_err.value)
    assert len(calls) == 4


def test_lstm_cell_compiled_step_under_torch_func_autocast_and_trace(compiled):
    """vmap, grad, jvp and jit.trace see the compiled step's operators: the same numbers as the
    Python step's (python_kernels_only). Under autocast: nn.LSTMCell's products in bfloat16, its
    states in float32."""
    import lstmbyhand

    torch.manual_seed(13)
    cell = lstmbyhand.LSTMCell(3, 5, dtype=torch.float64)
    single = lstmbyhand.LSTMCell(3, 5)
    params = dict(cell.named_parameters())
    x, h, c = (torch.randn(6, 2, n, dtype=torch.float64) for n in (3, 5, 5))

    def loss(p, x, h, c):
        h1, c1 = torch.func.functional_call(cell, p, (x, (h, c)))
        return (h1 * c1).sum()

    def all_of():
        vmapped = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0, 0))(params, x, h, c)
        tangent = {k: torch.ones_like(v) for k, v in params.items()}
        _, jvp = torch.func.jvp(lambda p: loss(p, x[0], h[0], c[0]), (params,), (tangent,))
        with torch.autocast("cpu", dtype=torch.bfloat16):  # (autocast recasts float32 only)
            cast = single(x[0].float(), (h[0].float(), c[0].float()))
        traced = torch.jit.trace(cell, (x[0], (h[0], c[0])))(x[1], (h[1], c[1]))
        return [*vmapped.values(), jvp, *cast, *traced]

    fast = all_of()
    with native.python_kernels_only():
        slow = all_of()
    theirs = nn.LSTMCell(3, 5)
    theirs.load_state_dict(single.state_dict())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = theirs(x[0].float(), (h[0].float(), c[0].float()))
    exact = single(x[0].float(), (h[0].float(), c[0].float()))
    for a, b, e in zip(fast[-4:-2], expected, exact, strict=True):
        assert a.dtype == b.dtype == torch.float32
        torch.testing.assert_close(a, b, atol=1e-2, rtol=0)  # bfloat16's roundings differ
        assert (a - e).abs().max() > 1e-4  # (the products did run in bfloat16)
    for a, b in zip(fast, slow, strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)


def test_lstm_cell_compiles_in_one_graph(compiled):
    """torch.compile traces the Python step (Dynamo cannot see inside the compiled one): one graph,
    the eager numbers."""
    import lstmbyhand

    torch.manual_seed(14)
    cell = lstmbyhand.LSTMCell(3, 5)
    x, h = torch.randn(2, 3), torch.randn(2, 5)
    graphed = torch.compile(cell, fullgraph=True, backend="eager")
    for a, b in zip(graphed(x, (h, h)), cell(x, (h, h)), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
