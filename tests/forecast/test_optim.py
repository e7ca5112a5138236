"""forecast/optim.py's Adam against torch.optim.Adam (which we did not write): the same update bit for
bit, through a checkpoint round trip in the middle, and without importing torch._dynamo."""

from __future__ import annotations

import subprocess
import sys

import torch
from helpers import subprocess_env

from lstmbyhand.forecast.optim import Adam


def _grads(params: list[torch.Tensor], step: int) -> None:
    g = torch.Generator().manual_seed(step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)


def test_adam_equals_torch_optim_adam_bit_for_bit_through_a_checkpoint():
    torch.manual_seed(0)
    ours = [torch.randn(4, 3, requires_grad=True), torch.randn(5, requires_grad=True)]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    optimizer = Adam(ours, lr=0.01, betas=(0.8, 0.95), eps=1e-7)
    reference = torch.optim.Adam(theirs, lr=0.01, betas=(0.8, 0.95), eps=1e-7)
    for step in range(60):
        if step == 30:  # resume from a checkpoint into a fresh optimizer
            tensors, settings = optimizer.state_tensors(), optimizer.settings()
            optimizer = Adam(ours, lr=0.5)
            optimizer.load(tensors, settings)
        _grads(ours, step)
        _grads(theirs, step)
        optimizer.step()
        reference.step()
        optimizer.zero_grad()
        reference.zero_grad()
    assert optimizer.t == 60
    for p, q in zip(ours, theirs, strict=True):
        assert torch.equal(p, q)
    for i, q in enumerate(theirs):
        assert torch.equal(optimizer.m[i], reference.state[q]["exp_avg"])
        assert torch.equal(optimizer.v[i], reference.state[q]["exp_avg_sq"])


def test_a_step_does_not_import_torch_dynamo():
    code = (
        "import sys, torch\n"
        "from lstmbyhand.forecast.optim import Adam\n"
        "p = torch.ones(3, requires_grad=True); p.grad = torch.ones(3)\n"
        "Adam([p], lr=0.1).step()\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"
