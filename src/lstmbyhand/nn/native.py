"""Loads the compiled kernels, `lstmbyhand.nn._C` (built at install from `csrc/`), if they are there.

The extension exposes `forward`, `forward_inference` and `backward` with the signatures of those in
`bptt.py`, and `fit_adam`, the seed's whole training loop. It runs on CPU tensors only; `bptt.py`
chooses it there and uses its own PyTorch ops everywhere else. Set the environment variable
LSTMBYHAND_NATIVE=0, or use `python_kernels_only()`, to turn the compiled path off.

An extension that exists but cannot be loaded (built against another torch, a missing library) is
reported once, as a warning, and the PyTorch ops are used instead.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import warnings
from collections.abc import Iterator
from types import ModuleType

MODULE = "lstmbyhand.nn._C"


def _load() -> ModuleType | None:
    if importlib.util.find_spec(MODULE) is None:  # not built: no compiler at install time
        return None
    try:
        return importlib.import_module(MODULE)
    except ImportError as err:
        warnings.warn(
            f"lstmbyhand: the compiled kernels ({MODULE}) exist but cannot be loaded ({err}); "
            "using the PyTorch ops instead. Rebuild with `bash scripts/setup.sh`.",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


_compiled = _load()
_enabled = os.environ.get("LSTMBYHAND_NATIVE", "1") != "0"


def built() -> bool:
    """True when the compiled kernels were built at install time and load (whether enabled or not)."""
    return _compiled is not None


def available() -> bool:
    """True when the compiled kernels are built and enabled."""
    return _enabled and _compiled is not None


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
