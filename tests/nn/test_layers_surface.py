"""nn.LSTM's and nn.LSTMCell's surface beyond forward: initial weights, repr, all_weights,
_flat_weights, flatten_parameters, reset_parameters, pickling; and LSTMCell's fast step against the
specification (gates.lstm_cell) and nn.LSTMCell, in values and gradients (float64)."""

import io

import pytest
import torch
from torch import nn

import lstmbyhand
from lstmbyhand.nn.gates import lstm_cell
from lstmbyhand.nn.layers import cell_step

F64 = torch.float64


@pytest.mark.parametrize(
    "theirs_cls,ours_cls,args",
    [
        (nn.LSTM, lstmbyhand.LSTM, dict(input_size=3, hidden_size=5)),
        (
            nn.LSTM,
            lstmbyhand.LSTM,
            dict(input_size=3, hidden_size=5, num_layers=2, bidirectional=True, proj_size=2),
        ),
        (nn.LSTM, lstmbyhand.LSTM, dict(input_size=3, hidden_size=5, bias=False, dropout=0.5)),
        (nn.LSTMCell, lstmbyhand.LSTMCell, dict(input_size=3, hidden_size=5)),
        (nn.LSTMCell, lstmbyhand.LSTMCell, dict(input_size=3, hidden_size=5, bias=False)),
    ],
)
def test_same_seed_gives_nn_lstms_initial_weights_and_repr(theirs_cls, ours_cls, args):
    """The defaults are nn.LSTM's: same parameters, drawn in the same order from the same RNG."""
    torch.manual_seed(7)
    theirs = theirs_cls(**args)
    torch.manual_seed(7)
    ours = ours_cls(**args)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert repr(ours) == repr(theirs)
    assert list(ours._parameters) == list(theirs._parameters)  # bias_ih: None registered too
    torch.manual_seed(8)
    ours.reset_parameters()
    torch.manual_seed(8)
    theirs.reset_parameters()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b)


def test_flat_weights_all_weights_and_flatten_parameters_as_in_nn_lstm():
    config = dict(input_size=3, hidden_size=5, num_layers=2, bidirectional=True, proj_size=2)
    theirs, ours = nn.LSTM(**config), lstmbyhand.LSTM(**config)
    assert ours._flat_weights_names == theirs._flat_weights_names
    assert [[p.shape for p in d] for d in ours.all_weights] == [
        [p.shape for p in d] for d in theirs.all_weights
    ]
    assert all(a is b for a, b in zip(ours._flat_weights, ours.parameters(), strict=True))
    # the way PyTorch's own tests copy weights between modules: through all_weights
    for mine, its in zip(ours.all_weights, theirs.all_weights, strict=True):
        for a, b in zip(mine, its, strict=True):
            a.data.copy_(b.data)
    x = torch.randn(4, 2, 3)
    assert torch.allclose(ours(x)[0], theirs(x)[0], atol=1e-6)
    # a parameter replaced by assignment, or converted by .double(), shows in _flat_weights at once
    ours.weight_hh_l0 = nn.Parameter(torch.zeros_like(ours.weight_hh_l0))
    assert ours._flat_weights[1] is ours.weight_hh_l0
    ours.double()
    assert all(w.dtype == F64 for w in ours._flat_weights)
    before = [w.clone() for w in ours._flat_weights]
    assert ours.flatten_parameters() is None and theirs.flatten_parameters() is None
    assert all(torch.equal(a, b) for a, b in zip(before, ours._flat_weights, strict=True))
    assert ours.mode == theirs.mode == "LSTM"


@pytest.mark.parametrize("bias", [True, False])
def test_cell_step_is_the_spec_and_nn_lstm_cell_in_values_and_gradients(bias):
    torch.manual_seed(5)
    theirs = nn.LSTMCell(3, 4, bias=bias, dtype=F64)
    x, h, c = (torch.randn(6, n, dtype=F64, requires_grad=True) for n in (3, 4, 4))
    params = list(theirs.parameters())
    weights = (theirs.weight_ih, theirs.weight_hh, theirs.bias_ih, theirs.bias_hh)
    probe = [torch.randn(6, 4, dtype=F64) for _ in range(2)]
    results = [cell_step(x, h, c, *weights), lstm_cell(x, h, c, *weights)[:2], theirs(x, (h, c))]
    grads = []
    for result in results:
        loss = sum((t * w).sum() for t, w in zip(result, probe, strict=True))
        grads.append(torch.autograd.grad(loss, [x, h, c, *params]))
    for k in (1, 2):  # the fast step against the spec, then against nn.LSTMCell
        for a, b in zip(results[0], results[k], strict=True):
            assert (a - b).abs().max() < 1e-14
        for a, b in zip(grads[0], grads[k], strict=True):
            assert (a - b).abs().max() < 1e-13


def test_cell_step_passes_gradcheck_and_gradgradcheck():
    torch.manual_seed(9)
    inputs = [torch.randn(2, n, dtype=F64, requires_grad=True) for n in (3, 4, 4)]
    weights = [p.detach().requires_grad_() for p in nn.LSTMCell(3, 4, dtype=F64).parameters()]
    assert torch.autograd.gradcheck(cell_step, (*inputs, *weights))
    assert torch.autograd.gradgradcheck(cell_step, (*inputs, *weights))


def test_lstm_cell_follows_nn_lstm_cell_step_by_step_and_pickles():
    """Driven step by step as PyTorch's examples/time_sequence_prediction drives it (float64):
    the same loss to 1e-15 and the same gradients; a pickled cell gives the same numbers."""
    torch.manual_seed(6)
    theirs = nn.LSTMCell(1, 5, dtype=F64)
    ours = lstmbyhand.LSTMCell(1, 5, dtype=F64)
    ours.load_state_dict(theirs.state_dict())
    inputs = torch.randn(3, 20, dtype=F64)  # (batch, steps)
    state = {"ours": (torch.zeros(3, 5, dtype=F64),) * 2}
    state["theirs"] = state["ours"]
    for x_t in inputs.split(1, dim=1):  # (3, 1) each
        state["ours"] = ours(x_t, state["ours"])
        state["theirs"] = theirs(x_t, state["theirs"])
    loss_ours, loss_theirs = (state[k][0].pow(2).mean() for k in ("ours", "theirs"))
    assert abs(loss_ours.item() - loss_theirs.item()) < 1e-15
    loss_ours.backward()
    loss_theirs.backward()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert (a.grad - b.grad).abs().max() < 1e-14
    buffer = io.BytesIO()
    torch.save(ours, buffer)
    buffer.seek(0)
    again = torch.load(buffer, weights_only=False)
    assert torch.equal(again(inputs[:, :1])[0], ours(inputs[:, :1])[0])
