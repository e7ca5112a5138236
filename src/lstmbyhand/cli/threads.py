"""torch's thread count for the forecasting commands: --threads, else OMP_NUM_THREADS, else 1."""

from __future__ import annotations

import os

from lstmbyhand.errors import UserError


def use_threads(n: int | None) -> None:
    """Intra-op threads for torch. These models are tiny: one thread is fastest, and more threads
    on a busy machine make every small op wait for the others (10-100x slower, measured).
    OMP_NUM_THREADS, when set, wins over the default of 1."""
    import torch

    if n is None:
        text = os.environ.get("OMP_NUM_THREADS", "").strip() or "1"
        try:
            n = int(text)
        except ValueError:
            raise UserError(
                f"OMP_NUM_THREADS must be a whole number ≥ 1, got {text!r}; unset it or set e.g. "
                "OMP_NUM_THREADS=1"
            ) from None
    torch.set_num_threads(max(1, min(n, 1024)))  # 10**30 threads would overflow torch's int
