"""How `lstmbyhand.nn.native` finds the compiled kernels: absent is quiet, broken is a warning.

(native.py loads at import, so a process warns once.)
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings

import pytest

from lstmbyhand.nn import native


def reload_with(monkeypatch, find_spec, import_module):
    """What native.py's loader returns under patched finders."""
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(importlib, "import_module", import_module)
    return native._load()


def broken(name):
    raise ImportError("undefined symbol: _ZN3c104impl8GPUTrace13gpuTraceStateE")


def test_an_extension_that_cannot_load_is_reported_once(monkeypatch):
    with pytest.warns(RuntimeWarning, match=r"exist but cannot be loaded \(undefined symbol"):
        assert reload_with(monkeypatch, lambda name: object(), broken) is None


def test_a_missing_extension_is_quiet(monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert reload_with(monkeypatch, lambda name: None, broken) is None
