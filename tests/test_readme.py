"""What the README claims about the tests is what the tests check."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def test_parity_tolerances_in_the_readme_are_the_tests():
    spec = importlib.util.spec_from_file_location("parity", ROOT / "tests/nn/test_layers_parity.py")
    parity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(parity)
    text = " ".join((ROOT / "README.md").read_text().split())
    claim = re.search(
        r"values within (\S+) \(float64\) and (\S+) \(float32\), gradients within (\S+) and (\S+?)\.",
        text,
    )
    assert claim, "the README's parity sentence is gone"
    values64, values32, grads64, grads32 = (float(v) for v in claim.groups())
    assert (values64, values32) == (parity.TOL[torch.float64], parity.TOL[torch.float32])
    assert (grads64, grads32) == (parity.GRAD_TOL[torch.float64], parity.GRAD_TOL[torch.float32])
