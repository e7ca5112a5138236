"""Many generated series in one global model: reading, windows per second, peak memory per rank.

    python benchmarks/many_series.py --series 10000 --steps 500 [--epochs 1] [--nproc 1|2]
                                     [--format parquet|csv] [--read-only]

Writes SERIES x STEPS values (a sine of its own period and level plus noise per series) as long
data (unique_id, ds, y) in Parquet (or CSV), then runs `lstmbyhand train` on it (`--base none`: no
statsforecast fit per series) in a fresh process, or under torchrun with --nproc 2, each rank
inside its own /usr/bin/time (`torchrun --no-python`), and reports the training windows per second
of the epochs (from metrics.csv), the wall time and each rank's peak resident memory (ru_maxrss).
Above pool.LAZY_ABOVE training windows the windows are made batch by batch (pool.Windows).
Under torchrun each rank reads the id column of the whole file, then only its own series' rows
(`pool.load_panel(..., shard=)`), and prepares and windows only those (pool.assign); the windows/s
is of all ranks together: the same epoch, shared out.

`--read-only`: instead of training, each rank's read alone, in a fresh process per rank (no
process group): seconds, peak RSS, and the file's rows it held at its peak (`Panel.held`).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

READ = """
import resource, sys, time
from lstmbyhand.forecast.config import TrainSettings
from lstmbyhand.forecast.pool import load_panel
rank, size = int(sys.argv[2]), int(sys.argv[3])
s = TrainSettings(sys.argv[1], target="y", base="none")
start = time.perf_counter()
panel = load_panel(s, shard=(rank, size) if size > 1 else None)
took = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
print(f"rank {rank} of {size}: read {took:.1f} s, peak RSS {peak:.2f} GB, "
      f"{len(panel.series):,} of {len(panel.ids):,} series held, {panel.held:,} rows at the peak")
"""


def generate(path: Path, series: int, steps: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    period = rng.integers(4, 24, series)[:, None]  # (S, 1)
    level = rng.uniform(10, 1000, series)[:, None]
    y = level * (1 + 0.1 * np.sin(2 * np.pi * t / period)) + rng.normal(0, 1, (series, steps))
    frame = pd.DataFrame({"unique_id": np.repeat([f"s{k}" for k in range(series)], steps),
                          "ds": np.tile(t, series), "y": y.ravel()})  # fmt: skip
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--series", type=int, default=10_000)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--nproc", type=int, default=1)
    p.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    p.add_argument("--read-only", action="store_true")
    args = p.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / f"many.{args.format}"
        generate(data, args.series, args.steps)
        if args.read_only:
            for rank in range(args.nproc):
                cmd = [sys.executable, "-c", READ, str(data), str(rank), str(args.nproc)]
                out = subprocess.run(cmd, capture_output=True, text=True, env=env)
                print(out.stdout.strip() if out.returncode == 0 else out.stderr[-2000:])
            return
        train = ["-m", "lstmbyhand", "train", str(data), "--base", "none", "--epochs",
                 str(args.epochs), "--patience", "0", "--batch-size", "256", "--quiet",
                 "--out", str(Path(tmp) / "run")]  # fmt: skip
        timed = ["/usr/bin/time", "-f", "peak_rss_kb %M"]
        launcher = [*timed, sys.executable] if args.nproc == 1 else [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={args.nproc}", "--no-python", *timed, sys.executable]  # fmt: skip
        start = time.perf_counter()
        out = subprocess.run([*launcher, *train], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
        if out.returncode:
            sys.exit(out.stderr[-2000:])
        rows = list(csv.DictReader(open(Path(tmp) / "run" / "metrics.csv")))
        epoch_s = sum(float(r["seconds"]) for r in rows) / len(rows)
        n_train = args.steps - 2 * round(0.15 * args.steps)
        windows = args.series * (n_train - 12)
        rss = [int(kb) / 1e6 for kb in re.findall(r"peak_rss_kb (\d+)", out.stderr)]  # per rank
        print(f"{args.series} series x {args.steps} steps ({args.format}), {args.nproc} "
              f"process(es): {windows:,} training windows; {epoch_s:.1f} s/epoch = "
              f"{windows / epoch_s:,.0f} windows/s; total wall {wall:.0f} s (reading + preparing "
              f"+ epochs + plot); peak RSS per rank "
              f"{', '.join(f'{r:.2f} GB' for r in rss) or 'n/a'}")  # fmt: skip


if __name__ == "__main__":
    main()
