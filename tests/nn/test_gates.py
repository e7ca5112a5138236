"""The gate math against numbers worked out by hand, and against autograd's gradcheck."""

import math

import torch

from lstmbyhand.nn.gates import gate_views, lstm_cell


def one_unit_weights():
    """A one-unit cell whose pre-activations are ln 3, 0, ln 2 and -ln 3 for x = 1, h = 0.5.

    input gate:   W_i = ln 3, U_i = 0           -> pre = ln 3        -> i = σ(ln 3) = 3/4
    forget gate:  W_f = 1,    U_f = -2          -> pre = 1 - 1 = 0   -> f = σ(0) = 1/2
    candidate:    W_g = 0,    U_g = 2 ln 2      -> pre = ln 2        -> g = tanh(ln 2) = (4-1)/(4+1) = 3/5
    output gate:  W_o = 0,    U_o = 0, b_o = -ln 3                   -> o = σ(-ln 3) = 1/4
    """
    ln2, ln3 = math.log(2), math.log(3)
    weight_ih = torch.tensor([[ln3], [1.0], [0.0], [0.0]], dtype=torch.float64)  # (4H, I), i f g o
    weight_hh = torch.tensor([[0.0], [-2.0], [2 * ln2], [0.0]], dtype=torch.float64)  # (4H, H)
    bias_ih = torch.tensor([0.0, 0.0, 0.0, -ln3], dtype=torch.float64)
    bias_hh = torch.zeros(4, dtype=torch.float64)
    return weight_ih, weight_hh, bias_ih, bias_hh


def test_one_unit_cell_matches_hand_arithmetic():
    x = torch.tensor([[1.0]], dtype=torch.float64)
    h = torch.tensor([[0.5]], dtype=torch.float64)
    c = torch.tensor([[0.4]], dtype=torch.float64)
    h_next, c_next, gates = lstm_cell(x, h, c, *one_unit_weights())
    assert torch.allclose(gates.input, torch.tensor([[0.75]], dtype=torch.float64), atol=1e-15)
    assert torch.allclose(gates.forget, torch.tensor([[0.5]], dtype=torch.float64), atol=1e-15)
    assert torch.allclose(gates.candidate, torch.tensor([[0.6]], dtype=torch.float64), atol=1e-15)
    assert torch.allclose(gates.output, torch.tensor([[0.25]], dtype=torch.float64), atol=1e-15)
    # c' = f c + i g = 0.5 * 0.4 + 0.75 * 0.6 = 0.2 + 0.45 = 0.65
    assert abs(c_next.item() - 0.65) < 1e-15
    # h' = o tanh(c') = 0.25 * tanh(0.65) = 0.25 * (e^1.3 - 1) / (e^1.3 + 1)
    e = math.exp(1.3)
    assert abs(h_next.item() - 0.25 * (e - 1) / (e + 1)) < 1e-15


def test_projection_multiplies_the_hidden_state():
    x, h, c = (torch.tensor([[v]], dtype=torch.float64) for v in (1.0, 0.5, 0.4))
    weight_hr = torch.tensor([[2.0], [-3.0]], dtype=torch.float64)  # (P=2, H=1)
    weights = one_unit_weights()
    plain, _, _ = lstm_cell(x, h, c, *weights)
    w_ih, _, b_ih, b_hh = weights
    # h has P = 2 columns now: the hidden weights need P columns; give the second one zero weight.
    w_hh = torch.cat([weights[1], torch.zeros(4, 1, dtype=torch.float64)], dim=1)
    h2 = torch.tensor([[0.5, 7.0]], dtype=torch.float64)
    projected, _, _ = lstm_cell(x, h2, c, w_ih, w_hh, b_ih, b_hh, weight_hr)
    assert torch.allclose(projected, torch.cat([2 * plain, -3 * plain], dim=1), atol=1e-15)


def test_gate_views_name_torch_order():
    stacked = torch.arange(8.0)
    views = gate_views(stacked)
    assert list(views) == ["input", "forget", "candidate", "output"]
    assert views["candidate"].tolist() == [4.0, 5.0]
    views["output"][0] = -1.0  # a view, not a copy
    assert stacked[6] == -1.0


def test_cell_gradients_pass_gradcheck():
    torch.manual_seed(0)
    B, I, H = 3, 2, 4
    args = [
        torch.randn(B, I, dtype=torch.float64),
        torch.randn(B, H, dtype=torch.float64),
        torch.randn(B, H, dtype=torch.float64),
        torch.randn(4 * H, I, dtype=torch.float64),
        torch.randn(4 * H, H, dtype=torch.float64),
        torch.randn(4 * H, dtype=torch.float64),
        torch.randn(4 * H, dtype=torch.float64),
    ]
    for a in args:
        a.requires_grad_()
    assert torch.autograd.gradcheck(lambda *a: lstm_cell(*a)[:2], args)
