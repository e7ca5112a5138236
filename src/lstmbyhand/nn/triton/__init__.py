"""Fused LSTM step kernels in Triton, for CUDA tensors: `bptt.py`'s three kernels, one launch per step.

    import lstmbyhand.nn.triton as lstm_triton
    if x.is_cuda and lstm_triton.available():
        from lstmbyhand.nn.triton import kernels   # forward, forward_inference, backward
        output, h_n, c_n, *cache = kernels.forward(x, h0, c0, w_ih, w_hh, bias, w_hr, None, False)

`forward`, `forward_inference` and `backward` (also reachable as `lstmbyhand.nn.triton.forward` etc.)
take and return exactly what those in `bptt.py` do; `kernels.py` says what each kernel computes.
Importing this package does not import triton: the `kernels` module does, so the package is safe on a
machine without triton. With TRITON_INTERPRET=1 set before triton is first imported, the kernels run on
CPU tensors through Triton's interpreter (slowly: it is for testing).
"""

from __future__ import annotations

import importlib

__all__ = ["available", "forward", "forward_inference", "backward"]


def available() -> bool:
    """True when triton imports and the kernels can run: CUDA is present, or TRITON_INTERPRET=1."""
    try:
        import triton
    except ImportError:
        return False
    import torch

    return torch.cuda.is_available() or bool(triton.knobs.runtime.interpret)


def __getattr__(name: str):
    if name in ("forward", "forward_inference", "backward"):
        return getattr(importlib.import_module(f"{__name__}.kernels"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
