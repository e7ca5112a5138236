"""The cell variants (nn/variants.py): the hand BPTT against autograd through the readable cell and
gradcheck in float64, one step of each variant worked out by hand, the defaults against nn.LSTM, the
refused combinations, the parameter names, and the regularizers' masks under a seed and in eval()."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import lstmbyhand
from lstmbyhand.nn import native
from lstmbyhand.nn.sequence import variant_sequence
from lstmbyhand.nn.variant_ops import variant_lstm_sequence
from lstmbyhand.nn.variants import CellOptions, Masks, Variant, VariantWeights, cell_forward

T, B, I, H = 4, 3, 2, 3
BATCH_SIZES = torch.tensor([3, 3, 2, 1])

VARIANTS = {  # every variant alone and the combinations the odyssey and the docs use
    "plain": Variant(),
    "peephole": Variant(peephole=True),
    "coupled": Variant(coupled=True),
    "layer_norm": Variant(layer_norm=True),
    "NIG": Variant(ablate=("input_gate",)),
    "NFG": Variant(ablate=("forget_gate",)),
    "NOG": Variant(ablate=("output_gate",)),
    "NIAF": Variant(ablate=("input_activation",)),
    "NOAF": Variant(ablate=("output_activation",)),
    "peephole+coupled+layer_norm": Variant(True, True, True),
    "peephole+layer_norm+NOAF": Variant(True, False, True, ("output_activation",)),
    "NIG+NFG+NOG": Variant(ablate=("input_gate", "forget_gate", "output_gate")),
    "coupled+NOG+NIAF": Variant(coupled=True, ablate=("output_gate", "input_activation")),
}


def make(v: Variant, P: int = H, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, dtype=dtype, generator=g).requires_grad_()

    ln = (rand(4 * H), rand(4 * H), rand(H), rand(H)) if v.layer_norm else (None,) * 4
    w = VariantWeights(
        rand(4 * H, I), rand(4 * H, P), rand(4 * H), rand(P, H) if P != H else None,
        rand(3 * H) if v.peephole else None, *ln,
    )  # fmt: skip
    return rand(T, B, I), rand(B, P), rand(B, H), w


def masks(P: int, regularized: bool, dtype=torch.float64) -> Masks:
    if not regularized:
        return Masks()
    torch.manual_seed(3)
    opts = CellOptions.of(recurrent_dropout=0.4, zoneout=(0.3, 0.5))
    return opts.masks(torch.zeros((), dtype=dtype), T, B, H, P, training=True)


def leaves(x, h0, c0, w):
    return [t for t in (x, h0, c0, *w) if t is not None]


def grads_of(outputs, inputs, seed=1):
    g = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, dtype=o.dtype, generator=g)).sum() for o in outputs)
    return list(torch.autograd.grad(loss, inputs))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_hand_bptt_equals_autograd_through_the_readable_cell(name):
    v = VARIANTS[name]
    for P, regularized, batch_sizes, reverse in [
        (H, False, None, False),
        (2, True, BATCH_SIZES, True),
    ]:
        x, h0, c0, w = make(v, P)
        m = masks(P, regularized)
        ref = variant_sequence(x, h0, c0, w, v, m, batch_sizes, reverse)[:3]
        with native.python_kernels_only():
            hand = variant_lstm_sequence(x, h0, c0, w, v, m, batch_sizes, reverse)
        for a, b in zip(hand, ref, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
        inputs = leaves(x, h0, c0, w)
        for a, b in zip(grads_of(hand, inputs), grads_of(ref, inputs), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-11)


@pytest.mark.parametrize("name", ["peephole+coupled+layer_norm", "NIG+NFG+NOG", "coupled+NOG+NIAF"])
def test_gradcheck_of_the_hand_bptt(name):
    v = VARIANTS[name]
    x, h0, c0, w = make(v, P=2)
    m = masks(2, regularized=True)
    present = [k for k, t in enumerate(w) if t is not None]

    def run(x, h0, c0, *ws):
        full = list(w)
        for k, t in zip(present, ws, strict=True):
            full[k] = t
        return variant_lstm_sequence(x, h0, c0, VariantWeights(*full), v, m, BATCH_SIZES, False)

    with native.python_kernels_only():
        assert torch.autograd.gradcheck(run, (x, h0, c0, *(w[k] for k in present)), fast_mode=True)


def test_double_backward_differentiates_the_readable_loop():
    v = VARIANTS["peephole+coupled+layer_norm"]
    x, h0, c0, w = make(v)
    inputs = leaves(x, h0, c0, w)

    def second(run):
        out = run(x, h0, c0, w, v, Masks())[0]
        (gx,) = torch.autograd.grad(out.pow(2).sum(), x, create_graph=True)
        return torch.autograd.grad(gx.sum(), inputs, allow_unused=True)

    with native.python_kernels_only():
        ours = second(variant_lstm_sequence)
    theirs = second(lambda *a: variant_sequence(*a)[:3])
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)


# -- one step by hand: H = 1, I = 1, every number written out --------------------------------------


def sig(z: float) -> float:
    return 1 / (1 + math.exp(-z))


X, H_PREV, C_PREV = 0.5, -0.3, 0.8
W_ = (0.1, -0.2, 0.3, 0.4)  # W_i, W_f, W_g, W_o (4H = 4 rows, I = 1)
U_ = (0.5, 0.6, -0.7, 0.2)
B_ = (0.05, 0.1, -0.1, 0.2)  # b_i + b_h per gate


def one_step(v: Variant, peephole=None, ln=None, m=None, zeta_c=None, zeta_h=None):
    d = torch.float64
    w = VariantWeights(
        torch.tensor(W_, dtype=d).view(4, 1), torch.tensor(U_, dtype=d).view(4, 1),
        torch.tensor(B_, dtype=d), None,
        None if peephole is None else torch.tensor(peephole, dtype=d),
        *((None,) * 4 if ln is None else (torch.tensor(t, dtype=d) for t in ln)),
    )  # fmt: skip

    def one(value):
        return None if value is None else torch.tensor([[value]], dtype=d)

    x, h, c = one(X), one(H_PREV), one(C_PREV)
    h_t, c_t, _ = cell_forward(v, w, x @ w.weight_ih.T, h, c, one(m), one(zeta_c), one(zeta_h))
    return h_t.item(), c_t.item()


def z(q: int, h: float = H_PREV) -> float:
    return W_[q] * X + U_[q] * h + B_[q]


def test_one_step_by_hand_plain_peephole_coupled():
    i, f, g, o = sig(z(0)), sig(z(1)), math.tanh(z(2)), sig(z(3))
    c = f * C_PREV + i * g
    assert one_step(Variant()) == pytest.approx((o * math.tanh(c), c), abs=1e-15)

    p_i, p_f, p_o = 0.3, -0.4, 0.9
    i, f = sig(z(0) + p_i * C_PREV), sig(z(1) + p_f * C_PREV)
    c = f * C_PREV + i * g
    o = sig(z(3) + p_o * c)  # the output gate sees the new cell
    got = one_step(Variant(peephole=True), peephole=(p_i, p_f, p_o))
    assert got == pytest.approx((o * math.tanh(c), c), abs=1e-15)

    i = sig(z(0))
    c = (1 - i) * C_PREV + i * g  # CIFG: f = 1 - i
    assert one_step(Variant(coupled=True)) == pytest.approx(
        (sig(z(3)) * math.tanh(c), c), abs=1e-15
    )


def test_one_step_by_hand_ablations():
    i, f, g, o = sig(z(0)), sig(z(1)), math.tanh(z(2)), sig(z(3))
    cases = {
        "input_gate": (f * C_PREV + g, o, math.tanh),  # NIG: i = 1
        "forget_gate": (C_PREV + i * g, o, math.tanh),  # NFG: f = 1
        "output_gate": (f * C_PREV + i * g, 1.0, math.tanh),  # NOG: o = 1
        "input_activation": (f * C_PREV + i * z(2), o, math.tanh),  # NIAF: g = z_g
        "output_activation": (f * C_PREV + i * g, o, lambda c: c),  # NOAF: h = o c
    }
    for name, (c, o_used, act) in cases.items():
        got = one_step(Variant(ablate=(name,)))
        assert got == pytest.approx((o_used * act(c), c), abs=1e-15), name


def test_one_step_by_hand_layer_norm():
    gx, gh, gc, bc = (1.5, 0.5, 2.0, -1.0), (0.7, 1.2, 0.3, 1.1), (1.3,), (0.2,)

    def ln(values):  # over the 4H = 4 pre-activations, population variance, eps 1e-5
        mean = sum(values) / 4
        var = sum((a - mean) ** 2 for a in values) / 4
        return [(a - mean) / math.sqrt(var + 1e-5) for a in values]

    ax = [W_[q] * X for q in range(4)]
    ah = [U_[q] * H_PREV for q in range(4)]
    zz = [
        p * gx[q] + r * gh[q] + B_[q] for q, (p, r) in enumerate(zip(ln(ax), ln(ah), strict=True))
    ]
    i, f, g, o = sig(zz[0]), sig(zz[1]), math.tanh(zz[2]), sig(zz[3])
    c = f * C_PREV + i * g
    s = 0.0 * gc[0] + bc[0]  # LN of one unit: c - mean(c) = 0
    got = one_step(Variant(layer_norm=True), ln=(gx, gh, gc, bc))
    assert got == pytest.approx((o * math.tanh(s), c), abs=1e-12)


def test_one_step_by_hand_regularizers():
    m, zc, zh = 2.0, 1.0, 0.0  # dropout kept h (1 / (1 - 0.5)); c zoned out (kept); h updated
    o = sig(z(3, m * H_PREV))  # the gates see m h_{t-1}
    c = C_PREV  # ζ_c = 1: the cell keeps its previous value, whatever i, f and g are
    got = one_step(Variant(), m=m, zeta_c=zc, zeta_h=zh)
    assert got == pytest.approx((o * math.tanh(c), c), abs=1e-15)
    p_h, p_c = 0.25, 0.5  # evaluation: the expectation
    i, f, g, o = sig(z(0)), sig(z(1)), math.tanh(z(2)), sig(z(3))
    c = p_c * C_PREV + (1 - p_c) * (f * C_PREV + i * g)
    h = p_h * H_PREV + (1 - p_h) * o * math.tanh(c)
    assert one_step(Variant(), zeta_c=p_c, zeta_h=p_h) == pytest.approx((h, c), abs=1e-15)


# -- the modules ----------------------------------------------------------------------------------


def test_defaults_and_forget_bias_are_nn_lstm():
    torch.manual_seed(0)
    ours = lstmbyhand.LSTM(3, 4, 2, forget_bias=1.0)
    assert (ours.bias_ih_l1[4:8] == 1).all() and (ours.bias_hh_l1[4:8] == 0).all()
    theirs = ours.to_torch()  # forget_bias is an initialization: nn.LSTM holds it
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(ours(x)[0], theirs(x)[0], rtol=0, atol=1e-6)
    torch.manual_seed(1)
    plain = lstmbyhand.LSTM(3, 4, peephole=False, coupled=False, layer_norm=False, ablate=())
    torch.manual_seed(1)
    torch.testing.assert_close(plain(x)[0], nn.LSTM(3, 4)(x)[0], rtol=0, atol=1e-6)


def test_parameter_names_and_initial_values():
    lstm = lstmbyhand.LSTM(3, 4, peephole=True, layer_norm=True, coupled=True, bidirectional=True)
    names = [n for n, _ in lstm.named_parameters()]
    assert names[:8] == [
        "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_peephole_l0",
        "ln_weight_ih_l0", "ln_weight_hh_l0", "ln_weight_c_l0",
    ]  # fmt: skip
    assert names[8] == "ln_bias_c_l0" and names[9] == "weight_ih_l0_reverse" and len(names) == 18
    assert lstm.weight_peephole_l0.shape == (12,) and lstm.ln_weight_c_l0.shape == (4,)
    assert (lstm.ln_weight_ih_l0 == 1).all() and (lstm.ln_bias_c_l0 == 0).all()
    assert (lstm.weight_ih_l0[4:8] == 0).all() and (lstm.bias_hh_l0_reverse[4:8] == 0).all()
    cell = lstmbyhand.LSTMCell(3, 4, peephole=True)
    assert [n for n, _ in cell.named_parameters()][-1] == "weight_peephole"


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"coupled": True, "ablate": ("input_gate",)}, "coupled=True with ablate='input_gate'"),
        ({"coupled": True, "ablate": ("forget_gate",)}, "coupled=True with ablate='forget_gate'"),
        ({"coupled": True, "forget_bias": 1.0}, "forget_bias=1.0 with coupled=True"),
        ({"ablate": ("forget_gate",), "forget_bias": 1.0}, "with ablate='forget_gate'"),
        ({"ablate": ("input",)}, "ablate: expected names from"),
        ({"ablate": "input_gate"}, "ablate: expected a tuple"),
        ({"recurrent_dropout": 1.0}, r"recurrent_dropout: expected a probability in \[0, 1\)"),
        ({"zoneout": (0.1, 1.5)}, r"zoneout: expected a probability in \[0, 1\], got 1.5"),
        ({"zoneout": (0.1, 0.2, 0.3)}, "zoneout: expected a probability or"),
    ],
)
def test_refused_combinations(kwargs, message):
    for module in (lstmbyhand.LSTM, lstmbyhand.LSTMCell):
        with pytest.raises((ValueError, TypeError), match=message):
            module(2, 3, **kwargs)


def test_to_torch_refuses_what_nn_lstm_cannot_express():
    with pytest.raises(ValueError, match="to_torch: expected .* got peephole=True, zoneout=0.1"):
        lstmbyhand.LSTM(2, 3, peephole=True, zoneout=0.1, forget_bias=1.0).to_torch()


def test_regularizers_repeat_under_a_seed_and_leave_in_eval():
    torch.manual_seed(0)
    lstm = lstmbyhand.LSTM(3, 4, 2, recurrent_dropout=0.5, zoneout=(0.2, 0.3))
    x = torch.randn(6, 2, 3)
    torch.manual_seed(7)
    first = lstm(x)[0]
    torch.manual_seed(7)
    again = lstm(x)[0]
    other = lstm(x)[0]  # new masks
    assert torch.equal(first, again) and not torch.equal(first, other)
    lstm.eval()
    evaluated = lstm(x)[0]
    assert torch.equal(evaluated, lstm(x)[0])  # no randomness in evaluation
    # evaluation: no recurrent dropout, zoneout's expectation ζ = p: the readable loop with those
    h = x
    for layer in range(2):
        w = lstm.direction_weights(layer, 0)
        weights = VariantWeights(w.weight_ih, w.weight_hh, w.bias_ih + w.bias_hh)
        expected = Masks(None, torch.full((6, 2, 4), 0.3), torch.full((6, 2, 4), 0.2))
        zeros = torch.zeros(2, 4)
        h = variant_sequence(h, zeros, zeros, weights, Variant(), expected)[0]
    torch.testing.assert_close(evaluated, h, rtol=0, atol=1e-6)


def test_traces_show_the_variants_gates():
    torch.manual_seed(0)
    x = torch.randn(5, 2, 3)
    trace = lstmbyhand.LSTM(3, 4, coupled=True, ablate=("output_gate",)).trace(x)[0][0]
    torch.testing.assert_close(trace.forget_gate, 1 - trace.input_gate)
    assert (trace.output_gate == 1).all()
    nig = lstmbyhand.LSTM(3, 4, ablate=("input_gate", "input_activation")).trace(x)[0][0]
    assert (nig.input_gate == 1).all() and (nig.candidate.abs() > 1).any()  # no tanh on g


def test_the_cell_is_one_step_of_the_layer():
    torch.manual_seed(0)
    kw = {"peephole": True, "layer_norm": True, "ablate": ("output_activation",)}
    lstm = lstmbyhand.LSTM(3, 4, **kw)
    cell = lstmbyhand.LSTMCell(3, 4, **kw)
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in lstm.state_dict().items()})
    x = torch.randn(1, 2, 3)
    h, c = cell(x[0])
    _, (h_n, c_n) = lstm(x)
    torch.testing.assert_close((h, c), (h_n[0], c_n[0]), rtol=0, atol=1e-6)


def test_the_cell_keeps_its_recurrent_mask_for_a_sequence():
    torch.manual_seed(0)
    cell = lstmbyhand.LSTMCell(3, 4, recurrent_dropout=0.5)
    x = torch.randn(2, 3)
    h, c = cell(x)
    mask = cell._recurrent_mask
    cell(x, (h, c))
    assert cell._recurrent_mask is mask  # the same sequence: the same mask
    cell(x)  # no state given: a new sequence, a new mask
    assert cell._recurrent_mask is not mask
    cell.eval()
    assert torch.equal(cell(x, (h, c))[0], cell(x, (h, c))[0])
