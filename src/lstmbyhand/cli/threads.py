"""One module per forecasting subcommand, each with `add_parser(subparsers)` and `run(args)`."""

from __future__ import annotations

import os


def use_threads(n: int | None) -> None:
    """Intra-op threads for torch. These models are tiny: one thread is fastest, and more threads
    on a busy machine make every small op wait for the others (10-100x slower, measured).
    OMP_NUM_THREADS, when set, wins over the default of 1."""
    import torch

    if n is None:
        n = int(os.environ.get("OMP_NUM_THREADS", "1") or 1)
    torch.set_num_threads(max(1, n))
