"""Every device this machine has (the CPU, and CUDA where there is a GPU): the same LSTM, the same numbers.

On a GPU the reference is torch.nn.LSTM on that GPU (cuDNN) and our own model on the CPU; on the CPU
the compiled kernels are checked against the PyTorch-op ones. Without a GPU only "cpu" is collected.
"""

import contextlib

import pytest
import torch
from reference import assert_close_lists, run_with_grads, tensors_of
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import lstmbyhand
from lstmbyhand import distributed, native
from lstmbyhand.bptt import lstm_sequence
from lstmbyhand.errors import UserError
from lstmbyhand.seed import LSTMbyHand, dataLoader

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}
CONFIGS = [
    dict(num_layers=2, bidirectional=True, batch_first=True, proj_size=2),
    dict(num_layers=1, bias=False),
]


@pytest.fixture(autouse=True)
def full_float32():
    """cuDNN may use TF32 for float32 on recent GPUs; compare full float32 with full float32."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


class Packed(nn.Module):
    """Packs the padded batch inside the call (lengths 3, 6, 1, 4: unsorted), so gradients reach x."""

    def __init__(self, lstm: nn.Module) -> None:
        super().__init__()
        self.lstm = lstm

    def forward(self, x, hx=None):
        lengths = torch.tensor([3, 6, 1, 4])
        packed = pack_padded_sequence(x, lengths, self.lstm.batch_first, enforce_sorted=False)
        return self.lstm(packed, hx)


def outputs_and_grads(module: nn.Module, x: torch.Tensor, packed: bool):
    """Values and gradients (of x and every parameter) of sum(outputs * fixed weights)."""
    x = x.detach().requires_grad_()
    module = Packed(module) if packed else module
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
def test_trace_on_device_equals_trace_on_cpu(device):
    torch.manual_seed(3)
    lstm = lstmbyhand.LSTM(2, 3, num_layers=2, dtype=torch.float64)
    x = torch.randn(5, 2, 2, dtype=torch.float64)
    expected = lstm.trace(x)
    got = lstm.to(device).trace(x.to(device))
    for ours, ref in zip(got, expected, strict=True):
        for a, b in zip(vars(ours[0]).values(), vars(ref[0]).values(), strict=True):
            assert a.device.type == device
            assert torch.allclose(a.cpu(), b, atol=1e-12, rtol=0)


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
