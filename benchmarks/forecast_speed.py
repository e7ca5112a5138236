"""Where the time of `train` + `evaluate` goes, for each bundled series, against the network's own.

    PYTHONPATH=src .venv/bin/python benchmarks/forecast_speed.py [--repeats 3] [--set hidden=16]

Two measurements per series:

* the CLI as a user runs it, `lstmbyhand train ... --quiet` then `lstmbyhand evaluate RUN`, each
  in a fresh process: wall and CPU (user + sys) seconds, against the budget
  1.5 x (the epochs' own seconds, from metrics.csv + 2 x the start-up of `python -c "import torch"`);
  also with `--base none` / `--no-baselines` (no statsforecast at all);
* the same train + evaluate in one process with each part timed (importing statsforecast,
  fitting and running the statistical models, the epochs, the checkpoint files, the loss plot).

CPU seconds are the steadier number on a shared machine; wall seconds are what a user waits.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.resources import files
from pathlib import Path

DATASETS = {"airline": ("airline.csv", "passengers", 12), "nile": ("nile.csv", "flow", 0),
            "lynx": ("lynx.csv", "trappings", 10)}  # fmt: skip
PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"),
       "OMP_NUM_THREADS": "1"}  # fmt: skip


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=ENV, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def cli_run(path: str, target: str, season: int, extra: list[str], stats: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run = f"{tmp}/run"
        base = [] if stats else ["--base", "none"]
        train = [PY, "-m", "lstmbyhand", "train", path, "--target", target, "--season",
                 str(season), "--out", run, "--quiet", *base, *extra]  # fmt: skip
        t_train = timed(train)
        t_eval = timed(
            [PY, "-m", "lstmbyhand", "evaluate", run, *([] if stats else ["--no-baselines"])]
        )
        with open(f"{run}/metrics.csv") as f:
            rows = list(csv.DictReader(f))
    return {
        "train": t_train,
        "evaluate": t_eval,
        "epochs": len(rows),
        "epoch_seconds": sum(float(r["seconds"]) for r in rows),
    }


SPENT: dict[str, float] = {}  # label -> seconds, filled by the wrappers `instrument` installs


def instrument() -> None:
    """Wrap the functions that do each part of train + evaluate with timers (once)."""
    from lstmbyhand.forecast import baselines, plots, rundir, train

    def wrap(owner, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def timed_call(*a, **k):
            t0 = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                SPENT[label] = SPENT.get(label, 0.0) + time.perf_counter() - t0

        setattr(owner, name, timed_call)

    wrap(baselines, "_model", "import statsforecast (first series only)")
    wrap(baselines.Statistical, "model", "fit the statistical models (incl. that import)")
    wrap(baselines.Statistical, "at", "all statistical forecasts (incl. the fits)")
    for method in ("write_weights", "write_state", "write_metrics", "write_config"):
        wrap(rundir.RunDir, method, "checkpoint files (atomic, fsync)")
    wrap(plots, "loss_curve", "loss plot")
    wrap(train.Trainer, "train_epoch", "epochs: training")
    wrap(train.Trainer, "validate", "epochs: validation")


def in_process(path: str, target: str, season: int, settings: dict) -> dict:
    """One train + evaluate in this process, with its parts timed."""
    from lstmbyhand.forecast.config import TrainSettings
    from lstmbyhand.forecast.evaluate import evaluate
    from lstmbyhand.forecast.restore import open_run
    from lstmbyhand.forecast.train import train

    SPENT.clear()
    s = TrainSettings(path, target, season=season, **settings)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train(s, f"{tmp}/run", quiet=True)
        t1 = time.perf_counter()
        model, _, config, prep = open_run(f"{tmp}/run")
        evaluate(model, prep, config.season)
        t2 = time.perf_counter()
    return {"train": round(t1 - t0, 3), "evaluate": round(t2 - t1, 3),
            **{k: round(v, 3) for k, v in SPENT.items()}}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--set", nargs="*", default=[], help="train flags, e.g. hidden=16")
    args = ap.parse_args()
    extra = [a for kv in args.set for a in (f"--{kv.split('=')[0]}", kv.split("=")[1])]
    settings = {k: int(v) if v.isdigit() else v for k, v in (kv.split("=") for kv in args.set)}
    startup = [timed([PY, "-c", "import torch"]) for _ in range(args.repeats)]
    up_wall = statistics.median(w for w, _ in startup)
    up_cpu = statistics.median(c for _, c in startup)
    print(f"python + torch start-up: {up_wall:.2f} s wall, {up_cpu:.2f} s CPU (median of "
          f"{args.repeats})")  # fmt: skip
    print(
        "| series | statsforecast | epochs | epochs' own s | train + evaluate s, wall (CPU) "
        "| budget s, 1.5 x (epochs + 2 start-ups), wall (CPU) | ratio to budget, wall (CPU) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, (file, target, season) in DATASETS.items():
        path = str(files("lstmbyhand") / "datasets" / file)
        for stats in (True, False):
            r = [cli_run(path, target, season, extra, stats) for _ in range(args.repeats)]
            wall = statistics.median(x["train"][0] + x["evaluate"][0] for x in r)
            cpu = statistics.median(x["train"][1] + x["evaluate"][1] for x in r)
            own = statistics.median(x["epoch_seconds"] for x in r)
            bw, bc = 1.5 * (own + 2 * up_wall), 1.5 * (own + 2 * up_cpu)
            print(f"| {name} | {'yes' if stats else 'no (--base none, --no-baselines)'} "
                  f"| {r[0]['epochs']} | {own:.2f} | {wall:.2f} ({cpu:.2f}) | {bw:.2f} ({bc:.2f}) "
                  f"| {wall / bw:.2f} ({cpu / bc:.2f}) |", flush=True)  # fmt: skip
    print("\nin one process, seconds per part (wall):")
    import torch

    torch.set_num_threads(1)
    instrument()
    for name, (file, target, season) in DATASETS.items():
        path = str(files("lstmbyhand") / "datasets" / file)
        print(name, json.dumps(in_process(path, target, season, settings)), flush=True)


if __name__ == "__main__":
    main()
