"""The hand-derived BPTT (PyTorch-op kernels) against autograd through the readable loop, and gradcheck."""

import itertools

import pytest
import torch

from lstmbyhand.nn import native
from lstmbyhand.nn.ops import lstm_sequence
from lstmbyhand.nn.sequence import reference_sequence

T, B, I, H = 5, 4, 3, 6
BATCH_SIZES = torch.tensor([4, 4, 3, 2, 1])  # a packed batch: lengths 5, 4, 3, 2


def make_args(proj, bias, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    P = proj or H

    def rand(*shape):
        return torch.randn(*shape, dtype=dtype, generator=g).requires_grad_()

    return [
        rand(T, B, I),
        rand(B, P),
        rand(B, H),
        rand(4 * H, I),
        rand(4 * H, P),
        rand(4 * H) if bias else None,
        rand(4 * H) if bias else None,
        rand(P, H) if proj else None,
    ]


CASES = list(itertools.product([0, 2], [True, False], [None, BATCH_SIZES], [False, True]))


@pytest.mark.parametrize("proj,bias,batch_sizes,reverse", CASES)
def test_hand_backward_equals_autograd_through_the_readable_loop(proj, bias, batch_sizes, reverse):
    args = make_args(proj, bias)
    leaves = [a for a in args if a is not None]
    with native.python_kernels_only():
        ours = lstm_sequence(*args, batch_sizes=batch_sizes, reverse=reverse)
    spec = reference_sequence(*args, batch_sizes=batch_sizes, reverse=reverse)[:3]
    weights = [torch.randn_like(t) for t in spec]
    with native.python_kernels_only():
        ours_grads = torch.autograd.grad(
            sum((o * w).sum() for o, w in zip(ours, weights, strict=True)), leaves
        )
    spec_grads = torch.autograd.grad(
        sum((o * w).sum() for o, w in zip(spec, weights, strict=True)), leaves
    )
    for a, b in zip((*ours, *ours_grads), (*spec, *spec_grads), strict=True):
        assert torch.allclose(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("proj,bias,batch_sizes,reverse", CASES[::3])
def test_hand_backward_passes_gradcheck(proj, bias, batch_sizes, reverse):
    args = make_args(proj, bias, seed=1)
    with native.python_kernels_only():
        assert torch.autograd.gradcheck(
            lambda *a: lstm_sequence(*a, batch_sizes=batch_sizes, reverse=reverse), args
        )


def test_no_grad_forward_equals_training_forward():
    args = make_args(2, True, seed=2)
    with native.python_kernels_only():
        trained = lstm_sequence(*args, batch_sizes=BATCH_SIZES)
        with torch.no_grad():
            inferred = lstm_sequence(*args, batch_sizes=BATCH_SIZES)
    for a, b in zip(trained, inferred, strict=True):
        assert not b.requires_grad and torch.equal(a.detach(), b)
