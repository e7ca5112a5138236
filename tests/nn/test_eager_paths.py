"""Eager calls of the plain LSTM: the paths `ops.lstm_sequence` picks outside torch.compile and
tracing, against nn.LSTM on copied weights: plain autograd (`_EagerDirection`, below the operator's
registration), a torch function mode (the operator itself, which the mode sees), forward-mode AD
(`torch.autograd.forward_ad`, the readable loop), and what a forward without hx runs."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_close_lists
from torch import nn
from torch.autograd import forward_ad
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from lstmbyhand.nn import LSTM


def _pair(proj_size: int = 0) -> tuple[LSTM, nn.LSTM]:
    torch.manual_seed(0)
    ours = LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=proj_size).double()
    theirs = nn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=proj_size).double()
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


class _Ops(TorchDispatchMode):
    """Records every operator that reaches the dispatcher from Python (ours as one each)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


class _Functions(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("with_hx", [False, True])
def test_eager_gradients_equal_nn_lstms(with_hx):
    ours, theirs = _pair()
    x = torch.randn(5, 2, 3, dtype=torch.double, requires_grad=True)
    hx = tuple(torch.randn(4, 2, 4, dtype=torch.double, requires_grad=True) for _ in range(2))
    results = []
    for module in (ours, theirs):
        out, (h_n, c_n) = module(x, hx if with_hx else None)
        loss = out.square().sum() + h_n.sum() + c_n.cos().sum()
        inputs = [x, *hx] if with_hx else [x]
        results.append([out, h_n, c_n, *torch.autograd.grad(loss, [*inputs, *module.parameters()])])
    assert_close_lists(results[0], results[1], 1e-12, "eager ours vs nn.LSTM")


def test_eager_forward_without_hx_makes_no_zeros_outside_the_operator():
    """Without hx the zero initial states are made inside our operator (there was a pair of zero
    tensors per call, made and never read): the dispatcher sees our forward, the stacks of h_n and
    c_n, and nothing that makes zeros."""
    ours, theirs = _pair()
    x = torch.randn(5, 2, 3, dtype=torch.double)
    for grad in (False, True):
        with torch.set_grad_enabled(grad), _Ops() as mode:
            got = ours(x)
        want = theirs(x)
        assert_close_lists([got[0], *got[1]], [want[0], *want[1]], 1e-12, f"grad={grad}")
        name = "lstmbyhand.forward.default" if grad else "lstmbyhand.forward_inference.default"
        assert mode.seen.count(name) == 4, mode.seen  # one per layer direction
        assert not [op for op in mode.seen if "zero" in op or "fill" in op or "full" in op]


def test_a_torch_function_mode_sees_the_operator_and_gradients_stay_nn_lstms():
    ours, theirs = _pair()
    x = torch.randn(5, 2, 3, dtype=torch.double)
    with _Functions() as mode:
        out = ours(x)[0]
        grads = torch.autograd.grad(out.sum(), list(ours.parameters()))
    expected = torch.autograd.grad(theirs(x)[0].sum(), list(theirs.parameters()))
    assert mode.seen.count("lstmbyhand.forward") == 4, mode.seen
    assert_close_lists(list(grads), list(expected), 1e-12, "gradients under a function mode")


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("proj_size", [0, 2])
def test_forward_mode_ad_in_eager_gives_nn_lstms_tangents(grad, proj_size):
    """forward_ad's dual tensors (not torch.func): nn.LSTM carries the tangents in both grad modes;
    ours did not (no_grad dropped them, with gradients it raised NotImplementedError)."""
    ours, theirs = _pair(proj_size)
    x = torch.randn(5, 2, 3, dtype=torch.double)
    dx = torch.randn_like(x)
    P = proj_size or 4
    h0, c0 = torch.randn(4, 2, P, dtype=torch.double), torch.randn(4, 2, 4, dtype=torch.double)
    dh0 = torch.randn_like(h0)
    tangents = []
    for module in (ours, theirs):
        with forward_ad.dual_level(), torch.set_grad_enabled(grad):
            for hx in (None, (forward_ad.make_dual(h0, dh0), c0)):
                out, (h_n, c_n) = module(forward_ad.make_dual(x, dx), hx)
                tangents += [forward_ad.unpack_dual(t).tangent for t in (out, h_n, c_n)]
    assert all(t is not None for t in tangents)
    half = len(tangents) // 2
    assert_close_lists(tangents[:half], tangents[half:], 1e-12, "tangents, ours vs nn.LSTM")
