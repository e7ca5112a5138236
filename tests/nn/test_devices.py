"""Every device this machine has (the CPU, and CUDA where there is a GPU): the same LSTM, the same numbers.

The reference is torch.nn.LSTM (on the same device, cuDNN on a GPU), autograd's gradcheck, and the
PyTorch-op kernels on the CPU (the specification the compiled kernels must equal). Without a GPU only "cpu" is collected.
"""

import contextlib

import pytest
import torch
from helpers import PackingWrapper, assert_close_lists, run_with_grads, tensors_of
from torch import nn

import lstmbyhand
from lstmbyhand.errors import UserError
from lstmbyhand.forecast import distributed
from lstmbyhand.nn import native
from lstmbyhand.nn.ops import lstm_sequence
from lstmbyhand.seed import LSTMbyHand, dataLoader

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
LENGTHS = torch.tensor([3, 6, 1, 4])  # unsorted on purpose
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}
CONFIGS = [
    dict(num_layers=2, bidirectional=True, batch_first=True, proj_size=2),
    dict(num_layers=1, bias=False),
]


@pytest.fixture(autouse=True)
def full_float32():
    """cuDNN may use TF32 for float32 on recent GPUs; compare full float32 with full float32.

    Through cudnn.flags(): torch.testing._internal (imported by tests/upstream, maybe earlier in the
    same worker) freezes the global cuDNN flags, and only the context manager may change them then."""
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


def outputs_and_grads(module: nn.Module, x: torch.Tensor, packed: bool):
    """Values and gradients (of x and every parameter) of sum(outputs * fixed weights)."""
    x = x.detach().requires_grad_()
    module = PackingWrapper(module, LENGTHS if packed else None)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        shapes = [t.shape for t in tensors_of(module(x))]
    weights = [torch.randn(s, generator=g, dtype=x.dtype).to(x.device) for s in shapes]
    values, grads = run_with_grads(module, (x,), None, weights)
    return [v.cpu() for v in values], [d.cpu() for d in grads]


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("device", DEVICES)
def test_matches_nn_lstm_on_the_same_device(device, dtype, config, packed):
    torch.manual_seed(0)
    theirs = nn.LSTM(3, 5, **config, device=device, dtype=dtype)
    ours = lstmbyhand.LSTM.from_torch(theirs)
    assert ours.weight_ih_l0.device.type == device
    shape = (4, 6, 3) if config.get("batch_first") else (6, 4, 3)
    x = torch.randn(shape, device=device, dtype=dtype)
    our_values, our_grads = outputs_and_grads(ours, x, packed)
    their_values, their_grads = outputs_and_grads(theirs, x, packed)
    assert_close_lists(our_values, their_values, TOL[dtype], "output, h_n, c_n")
    assert_close_lists(our_grads, their_grads, TOL[dtype] * 10, "gradients")


@pytest.mark.parametrize("device", DEVICES)
def test_same_numbers_as_the_pytorch_op_kernels_on_cpu(device):
    """This device's kernels (compiled on CPU, PyTorch ops on CUDA) against the CPU PyTorch-op path."""
    torch.manual_seed(1)
    cpu = lstmbyhand.LSTM(3, 5, num_layers=2, bidirectional=True, dtype=torch.float64)
    here = lstmbyhand.LSTM(3, 5, num_layers=2, bidirectional=True, dtype=torch.float64)
    here.load_state_dict(cpu.state_dict())
    here.to(device)
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    with native.python_kernels_only():
        expected = outputs_and_grads(cpu, x, packed=True)
    got = outputs_and_grads(here, x.to(device), packed=True)
    assert_close_lists(got[0], expected[0], 1e-12, "values")
    assert_close_lists(got[1], expected[1], 1e-12, "gradients")


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_on_device(device):
    g = torch.Generator().manual_seed(2)
    T, B, I, H, P = 4, 3, 2, 3, 2

    def rand(*shape):
        return torch.randn(*shape, dtype=torch.float64, generator=g).to(device).requires_grad_()

    args = [rand(T, B, I), rand(B, P), rand(B, H), rand(4 * H, I), rand(4 * H, P)]
    args += [rand(4 * H), rand(4 * H), rand(P, H)]
    assert torch.autograd.gradcheck(lambda *a: lstm_sequence(*a, reverse=True), args)


@pytest.mark.parametrize("device", DEVICES)
def test_trace_on_device_agrees_with_nn_lstm(device):
    """Each layer's traced hidden states are nn.LSTM's outputs; its last cell state is c_n."""
    torch.manual_seed(3)
    theirs = nn.LSTM(2, 3, num_layers=2, dtype=torch.float64)
    x = torch.randn(5, 2, 2, dtype=torch.float64)  # (T, B, I)
    output, (_, c_n) = theirs(x)
    layer_one = nn.LSTM(2, 3, dtype=torch.float64)
    layer_one.load_state_dict({k: v for k, v in theirs.state_dict().items() if k.endswith("l0")})
    traces = lstmbyhand.LSTM.from_torch(theirs).to(device).trace(x.to(device))
    expected_hidden = [layer_one(x)[0], output]
    for layer, (trace,) in enumerate(traces):
        assert trace.hidden.device.type == device
        assert torch.allclose(trace.hidden.cpu(), expected_hidden[layer], atol=1e-12, rtol=0)
        assert torch.allclose(trace.cell[-1].cpu(), c_n[layer], atol=1e-12, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_seed_model_trains_on_device(device):
    """The seed's example on this device (CPU data moves to the model) against the CPU Python loop."""

    def train(where, python_only):
        torch.manual_seed(4)
        model = LSTMbyHand(1, 1, dtype=torch.float64).to(where)
        with native.python_kernels_only() if python_only else contextlib.nullcontext():
            losses = model.train_model(dataLoader(), max_epoch=300, tol=None)
        return losses, model.predict(torch.tensor([0.0, 0.5, 0.25, 1.0]))

    expected_losses, expected = train("cpu", python_only=True)
    losses, prediction = train(device, python_only=False)
    assert prediction.device.type == device
    assert torch.allclose(torch.tensor(losses), torch.tensor(expected_losses), rtol=1e-9, atol=0)
    assert torch.allclose(prediction.cpu(), expected, rtol=1e-9, atol=0)


def test_device_choice_under_torchrun(monkeypatch):
    """One GPU per process or none: "auto" falls back to the CPU, "cuda" says why it cannot."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.choose_device("auto") == torch.device("cpu")
    with pytest.raises(UserError, match=r"at most one process per GPU \(1 on this node\), got 2"):
        distributed.choose_device("cuda")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")  # two nodes, one process each
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert distributed.choose_device("auto") == torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert distributed.choose_device("auto") == torch.device("cpu")
    with pytest.raises(UserError, match="no CUDA device is available"):
        distributed.choose_device("cuda")
