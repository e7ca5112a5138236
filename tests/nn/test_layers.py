"""lstmbyhand.LSTM / LSTMCell beyond the parity grid: state_dicts, traces, dropout, errors, kernels used."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import lstmbyhand
from lstmbyhand.nn.sequence import GateTrace


def test_state_dict_moves_both_ways_with_the_same_names():
    theirs = nn.LSTM(3, 6, num_layers=2, bidirectional=True, proj_size=2)
    ours = lstmbyhand.LSTM(3, 6, num_layers=2, bidirectional=True, proj_size=2)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [p.shape for p in ours.parameters()] == [p.shape for p in theirs.parameters()]
    ours.load_state_dict(theirs.state_dict())
    fresh = nn.LSTM(3, 6, num_layers=2, bidirectional=True, proj_size=2)
    fresh.load_state_dict(ours.state_dict())
    for a, b in zip(fresh.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b)


def test_from_torch_and_to_torch_round_trip():
    theirs = nn.LSTM(2, 4, num_layers=2, batch_first=True, dropout=0.25, bias=False)
    ours = lstmbyhand.LSTM.from_torch(theirs)
    assert (ours.batch_first, ours.dropout, ours.bias, ours.num_layers) == (True, 0.25, False, 2)
    back = ours.to_torch()
    assert isinstance(back, nn.LSTM) and back.batch_first and not back.bias
    x = torch.randn(3, 5, 2)
    theirs.eval(), ours.eval(), back.eval()
    assert torch.allclose(ours(x)[0], theirs(x)[0], atol=1e-6)
    assert torch.equal(back(x)[0], theirs(x)[0])
    with pytest.raises(TypeError, match="expected a torch.nn.LSTM, got GRU"):
        lstmbyhand.LSTM.from_torch(nn.GRU(2, 4))


def test_default_init_is_pytorchs_uniform():
    torch.manual_seed(0)
    ours = lstmbyhand.LSTM(10, 16)
    bound = 1 / 16**0.5
    for p in ours.parameters():
        assert p.abs().max() <= bound
        assert p.abs().max() > 0.8 * bound  # drawn over the whole range, not zeros


def test_trace_records_every_gate_and_agrees_with_forward():
    torch.manual_seed(1)
    lstm = lstmbyhand.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    x = torch.randn(2, 5, 3)  # (B, T, I)
    output, (h_n, c_n) = lstm(x)
    traces = lstm.trace(x)
    assert len(traces) == 2 and all(len(layer) == 2 for layer in traces)
    top_fwd, top_bwd = traces[1]
    assert isinstance(top_fwd, GateTrace)
    for field in ("input_gate", "forget_gate", "candidate", "output_gate", "cell", "hidden"):
        assert getattr(top_fwd, field).shape == (5, 2, 4)  # (T, B, H), time-major
    assert torch.allclose(top_fwd.hidden.transpose(0, 1), output[..., :4], atol=1e-6)
    assert torch.allclose(top_bwd.hidden.transpose(0, 1), output[..., 4:], atol=1e-6)
    assert torch.allclose(top_fwd.cell[-1], c_n[2], atol=1e-6)  # forward direction ends at T-1
    assert torch.allclose(top_bwd.cell[0], c_n[3], atol=1e-6)  # reverse direction ends at 0
    # the gates obey the cell equations: c_t = f c_{t-1} + i g, h_t = o tanh(c_t)
    f, i, g, o, c = (
        top_fwd.forget_gate,
        top_fwd.input_gate,
        top_fwd.candidate,
        top_fwd.output_gate,
        top_fwd.cell,
    )
    assert torch.allclose(c[1:], f[1:] * c[:-1] + i[1:] * g[1:], atol=1e-6)
    assert torch.allclose(top_fwd.hidden, o * torch.tanh(c), atol=1e-6)
    assert ((0 < f) & (f < 1)).all() and ((-1 < g) & (g < 1)).all()


def test_trace_of_packed_input_is_cut_at_each_length_in_input_order():
    torch.manual_seed(2)
    lstm = lstmbyhand.LSTM(2, 3)
    x = torch.randn(4, 3, 2)  # (T, B, I)
    lengths = torch.tensor([2, 4, 3])
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    trace = lstm.trace(packed)[0][0]
    padded, _ = pad_packed_sequence(lstm(packed)[0])  # (T, B, H) in input order
    assert torch.allclose(trace.hidden, padded, atol=1e-6)
    for b, length in enumerate(lengths.tolist()):
        assert (trace.forget_gate[length:, b] == 0).all()
        assert (trace.forget_gate[:length, b] > 0).all()
        # each sequence alone gives the same gates
        alone = lstm.trace(x[:length, b])[0][0]
        assert torch.allclose(alone.forget_gate[:, 0], trace.forget_gate[:length, b], atol=1e-6)


def test_dropout_acts_between_layers_in_training_only():
    torch.manual_seed(3)
    lstm = lstmbyhand.LSTM(2, 8, num_layers=2, dropout=0.5)
    x = torch.randn(5, 3, 2)
    lstm.eval()
    assert torch.equal(lstm(x)[0], lstm(x)[0])
    no_dropout = lstmbyhand.LSTM(2, 8, num_layers=2)
    no_dropout.load_state_dict(lstm.state_dict())
    assert torch.allclose(lstm(x)[0], no_dropout(x)[0])
    lstm.train()
    assert not torch.allclose(lstm(x)[0], lstm(x)[0])
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        lstmbyhand.LSTM(2, 8, num_layers=1, dropout=0.5)


def test_lstm_cell_matches_nn_lstm_cell():
    torch.manual_seed(4)
    theirs = nn.LSTMCell(3, 5, dtype=torch.float64)
    ours = lstmbyhand.LSTMCell(3, 5, dtype=torch.float64)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    hx = (torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64))
    for a, b in zip(ours(x, hx), theirs(x, hx), strict=True):
        assert torch.allclose(a, b, atol=1e-12)
    for a, b in zip(ours(x[0]), theirs(x[0]), strict=True):  # unbatched, zero state
        assert a.shape == (5,) and torch.allclose(a, b, atol=1e-12)
    (g_ours,) = torch.autograd.grad(ours(x)[0].sum(), x)
    (g_theirs,) = torch.autograd.grad(theirs(x)[0].sum(), x)
    assert torch.allclose(g_ours, g_theirs, atol=1e-12)
    no_bias = lstmbyhand.LSTMCell(3, 5, bias=False)
    assert no_bias.bias_ih is None and len(list(no_bias.parameters())) == 2


def test_double_backward_equals_the_readable_loops():
    lstm = lstmbyhand.LSTM(2, 3, dtype=torch.float64)
    x = torch.randn(4, 1, 2, dtype=torch.float64, requires_grad=True)
    results = []
    for backend in ("bptt", "reference"):  # the readable path is autograd all the way
        lstm.backend = backend
        (g,) = torch.autograd.grad(lstm(x)[0].sum(), x, create_graph=True)
        results.append(torch.autograd.grad(g.square().sum(), x)[0])
    assert torch.allclose(results[0], results[1], atol=1e-12, rtol=0)


def is_torch_recurrent_kernel(name: str) -> bool:
    """aten::lstm, aten::lstm_cell, aten::mkldnn_rnn_layer, aten::_cudnn_rnn, ... (not our lstmbyhand:: operators)."""
    name = name.lower()
    return name.startswith("aten::") and any(k in name for k in ("lstm", "rnn"))


def recurrent_kernels_seen(run) -> tuple[list[str], list[str]]:
    """Profile `run()`: (names of torch's recurrent kernels seen, names of all events)."""
    with torch.profiler.profile() as prof:
        run()
    names = [event.name for event in prof.events()]
    return [n for n in names if is_torch_recurrent_kernel(n)], names


def test_library_never_runs_torchs_lstm_kernels():
    """Profile a training step (packed, bidirectional, projected) and an inference pass: no LSTM/RNN ops."""
    lstm = lstmbyhand.LSTM(3, 6, num_layers=2, bidirectional=True, proj_size=2)
    x = torch.randn(5, 4, 3)
    packed = pack_padded_sequence(x, torch.tensor([5, 2, 4, 1]), enforce_sorted=False)

    def ours():
        out, _ = lstm(x)
        out.sum().backward()
        lstm(packed)[0].data.sum().backward()
        with torch.no_grad():
            lstm(x)

    def ours_then_nn_lstm():  # a positive control: the check must see nn.LSTM's kernel when it runs
        ours()
        nn.LSTM(3, 6)(x)

    control, _ = recurrent_kernels_seen(ours_then_nn_lstm)
    assert control, "the profiler did not see nn.LSTM's kernel: the check below would prove nothing"
    forbidden, names = recurrent_kernels_seen(ours)
    assert not forbidden, (
        f"torch's own recurrent kernels ran inside the library: {sorted(set(forbidden))}"
    )
    assert any(name.startswith("lstmbyhand::") for name in names)  # it did record our own ops


@settings(max_examples=60, deadline=None)
@given(
    dims=st.lists(st.integers(0, 4), min_size=0, max_size=4),
    batch_first=st.booleans(),
    bidirectional=st.booleans(),
)
def test_any_input_shape_gives_nn_lstms_result_or_its_error(dims, batch_first, bidirectional):
    """Random shapes: nn.LSTM's shapes and numbers where nn.LSTM gives them, else its error and text."""
    ours = lstmbyhand.LSTM(3, 2, batch_first=batch_first, bidirectional=bidirectional)
    theirs = ours.to_torch()
    x = torch.randn(tuple(dims))
    try:
        expected = theirs(x)
    except (RuntimeError, ValueError, IndexError) as err:
        with pytest.raises(type(err)) as ours_err:
            ours(x)
        assert str(ours_err.value) == str(err)
        return
    output, (h_n, c_n) = ours(x)
    assert output.shape == expected[0].shape and h_n.shape == expected[1][0].shape
    assert torch.allclose(output, expected[0], atol=1e-5)
