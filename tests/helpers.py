"""The test suite's shared helpers, in one place: comparing with torch.nn.LSTM on copied weights,
torch's thread count, and the environment of subprocesses that run `python -m lstmbyhand`.

Importable from every test folder: pytest puts this folder (the root conftest.py's) on sys.path.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence


def tensors_of(result) -> list[torch.Tensor]:
    """output, h_n, c_n of an LSTM call as plain tensors (a PackedSequence gives its data)."""
    output, (h_n, c_n) = result
    if isinstance(output, PackedSequence):
        output = output.data
    return [output, h_n, c_n]


def run_with_grads(module, inputs, hx, weights):
    """Call the module and differentiate sum(result * weights) w.r.t. inputs, states and parameters."""
    outputs = tensors_of(module(*inputs) if hx is None else module(*inputs, hx))
    loss = sum((out * w).sum() for out, w in zip(outputs, weights, strict=True))
    leaves = [t for t in (*inputs, *(hx or ())) if isinstance(t, torch.Tensor)] + list(
        module.parameters()
    )
    grads = torch.autograd.grad(loss, leaves)
    return outputs, grads


def assert_close_lists(ours, theirs, atol, what):
    assert len(ours) == len(theirs)
    for k, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert a.shape == b.shape, f"{what}[{k}]: shape {tuple(a.shape)} vs {tuple(b.shape)}"
        err = (a - b).abs().max().item() if a.numel() else 0.0
        assert err <= atol, f"{what}[{k}]: max difference {err:.3g} > {atol}"


class PackingWrapper(nn.Module):
    """Packs the padded input inside the call (when lengths are given), so gradients reach it."""

    def __init__(self, lstm, lengths):
        super().__init__()
        self.lstm, self.lengths = lstm, lengths

    def forward(self, x, hx=None):
        if self.lengths is not None:
            x = pack_padded_sequence(
                x, self.lengths, batch_first=self.lstm.batch_first, enforce_sorted=False
            )
        return self.lstm(x, hx)


SRC = str(Path(__file__).resolve().parents[1] / "src")  # the package under test, for subprocesses


def subprocess_env(**extra: str) -> dict[str, str]:
    """os.environ with the package under test first on PYTHONPATH, one OpenMP thread unless
    OMP_NUM_THREADS is set (as in the test process: conftest.py), and `extra` set."""
    env = {"OMP_NUM_THREADS": "1", **os.environ, **extra}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with torch's intra-op thread count set to n, restored after."""
    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def one_line_error(capsys, argv: list[str], *expected: str) -> str:
    """Run the CLI in-process: it must exit 2 with one line on stderr holding every `expected`."""
    from lstmbyhand.cli import main

    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for piece in expected:
        assert piece in lines[0], lines[0]
    return lines[0]
