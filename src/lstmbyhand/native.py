"""Chooses between the compiled BPTT kernels (`lstmbyhand._native`, built at install) and the PyTorch ones.

Both expose `forward`, `forward_inference` and `backward` with the signatures of those in `bptt.py`.
The compiled kernels run on CPU tensors only; CUDA and any other device use the PyTorch ops. Set the
environment variable LSTMBYHAND_NATIVE=0, or use `python_kernels_only()`, to turn the compiled path off.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from types import ModuleType, SimpleNamespace

from torch import Tensor

try:  # built by setup.py; absent when the compiler was not available at install time
    from lstmbyhand import _native as _compiled
except ImportError:  # pragma: no cover - depends on the install
    _compiled = None
if not hasattr(_compiled, "forward"):  # without the .so, the _native/ sources import as a namespace
    _compiled = None

_enabled = os.environ.get("LSTMBYHAND_NATIVE", "1") != "0"


def built() -> bool:
    """True when the compiled kernels were built at install time (whether enabled or not)."""
    return _compiled is not None


def available() -> bool:
    """True when the compiled kernels are built and enabled."""
    return _enabled and hasattr(_compiled, "forward")


def compiled() -> ModuleType | None:
    """The compiled extension module, or None when it is not built or turned off."""
    return _compiled if available() else None


@contextlib.contextmanager
def python_kernels_only() -> Iterator[None]:
    """Run the block with the PyTorch-op kernels even where the compiled ones exist."""
    global _enabled
    saved, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = saved


def kernels_for(x: Tensor) -> ModuleType | SimpleNamespace:
    """The kernels for this tensor: compiled on CPU when available, else PyTorch ops."""
    if x.device.type == "cpu" and available():
        return _compiled
    from lstmbyhand import bptt

    return SimpleNamespace(
        forward=bptt.forward, forward_inference=bptt.forward_inference, backward=bptt.backward
    )
