"""Many generated series in one global model: reading, windows per second, peak memory.

    python benchmarks/many_series.py --series 10000 --steps 500 [--epochs 1] [--nproc 1|2]

Writes SERIES x STEPS values (a sine of its own period and level plus noise per series) as long
data (unique_id, ds, y) in Parquet, then runs `lstmbyhand train` on it (`--base none`: no
statsforecast fit per series) in a fresh process, or under torchrun with --nproc 2, and reports
the seconds to read and prepare the data, the training windows per second of the epochs (from
metrics.csv) and each process's peak resident memory (ru_maxrss, from /usr/bin/time's format).
Above pool.LAZY_ABOVE training windows the windows are made batch by batch (pool.Windows).
Under torchrun each rank reads the whole file but prepares and windows only its own series
(pool.assign), so the windows/s is of all ranks together: the same epoch, shared out.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def generate(path: Path, series: int, steps: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    period = rng.integers(4, 24, series)[:, None]  # (S, 1)
    level = rng.uniform(10, 1000, series)[:, None]
    y = level * (1 + 0.1 * np.sin(2 * np.pi * t / period)) + rng.normal(0, 1, (series, steps))
    frame = pd.DataFrame({"unique_id": np.repeat([f"s{k}" for k in range(series)], steps),
                          "ds": np.tile(t, series), "y": y.ravel()})  # fmt: skip
    frame.to_parquet(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--series", type=int, default=10_000)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--nproc", type=int, default=1)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "many.parquet"
        generate(data, args.series, args.steps)
        train = ["-m", "lstmbyhand", "train", str(data), "--base", "none", "--epochs",
                 str(args.epochs), "--patience", "0", "--batch-size", "256", "--quiet",
                 "--out", str(Path(tmp) / "run")]  # fmt: skip
        launcher = [sys.executable] if args.nproc == 1 else [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={args.nproc}"]  # fmt: skip
        start = time.perf_counter()
        out = subprocess.run(["/usr/bin/time", "-f", "peak_rss_kb %M", *launcher, *train],
                             capture_output=True, text=True, env={"OMP_NUM_THREADS": "1",
                             **__import__("os").environ})  # fmt: skip
        wall = time.perf_counter() - start
        if out.returncode:
            sys.exit(out.stderr[-2000:])
        rows = list(csv.DictReader(open(Path(tmp) / "run" / "metrics.csv")))
        epoch_s = sum(float(r["seconds"]) for r in rows) / len(rows)
        n_train = args.steps - 2 * round(0.15 * args.steps)
        windows = args.series * (n_train - 12)
        rss = [line for line in out.stderr.splitlines() if line.startswith("peak_rss_kb")]
        print(f"{args.series} series x {args.steps} steps, {args.nproc} process(es): "
              f"{windows:,} training windows; {epoch_s:.1f} s/epoch = {windows / epoch_s:,.0f} "
              f"windows/s; total wall {wall:.0f} s (reading + preparing + epochs + plot); "
              f"{rss[-1] if rss else 'peak rss n/a'} (the largest process)")  # fmt: skip


if __name__ == "__main__":
    main()
