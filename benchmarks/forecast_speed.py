"""Where the time of `train` + `evaluate` goes, for each bundled series, against the network's own.

    PYTHONPATH=src .venv/bin/python benchmarks/forecast_speed.py [--repeats 5] [--set hidden=16]
        [--src DIR]   (another checkout's src/, e.g. the commit before a change)
        [--cases cold,warm] [--against DIR]   (DIR's src/ alternating with --src: before/after)

Per bundled series (airline, Nile, lynx), defaults: `lstmbyhand train DATA --quiet` then
`lstmbyhand evaluate RUN`, each a fresh process, as a user runs them, against

    reference = the epochs' own seconds (metrics.csv's `seconds`: training + validation passes)
              + 2 x the start-up of `python -c "import torch"` (one per process)

    ratio = median(train + evaluate) / (median(epochs' own) + 2 x median(start-up))   (target ≤ 1.5)

in wall seconds (what a user waits) and CPU seconds (user + sys of the processes, children
included; the steadier number on a shared machine). The start-up is measured in every repeat,
alternating with the runs. Two cases (`--cases`), alternating within each repeat:
  cold   the series' first run (an empty cache of statistical forecasts, LSTMBYHAND_CACHE_DIR,
         see forecast/baselines.py): train imports statsforecast and fits the models
  warm   a later run of the same series and season (the cache filled by one untimed run first:
         train reads the forecasts back)
Then start-up pieces a run pays beyond `import torch` (fresh processes, alternating with a plain
`import torch`; CPU), and, in this process, each part of a cold train + evaluate timed
(`instrument`).
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
SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
CACHE_ENV = "LSTMBYHAND_CACHE_DIR"  # baselines.py's
CASES = ("cold", "warm")
PIECES = {  # what a run imports beyond torch, each timed in a fresh process minus `import torch`
    "torch._dynamo (torch.optim.Adam's first step; forecast/optim.py avoids it)": "import torch._dynamo",
    "statsforecast.models (train's fits; evaluate without stored forecasts)": (
        "import statsforecast.models"
    ),
    "pandas (train reading the CSV; evaluate without series.safetensors)": "import pandas",
    "matplotlib + loss.png (plots.loss_curve, 30 epochs)": (
        "from lstmbyhand.forecast import plots; import tempfile; plots.loss_curve([{'epoch': e, "
        "'train_loss': 1 / e, 'val_loss': 2 / e} for e in range(1, 31)], tempfile.mktemp())"
    ),
}


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=ENV, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def cli_run(
    path: str, target: str, season: int, extra: list[str], cache: str = "", src: str = ""
) -> dict:
    """One `train` + `evaluate` as a user runs them: (wall, CPU) each, and the epochs' seconds;
    `cache`: the folder of cached statistical forecasts ("": a fresh, empty one); `src`: the
    src/ folder run (default: the one chosen in `main`)."""
    with tempfile.TemporaryDirectory() as tmp:
        run = f"{tmp}/run"
        ENV[CACHE_ENV] = cache or f"{tmp}/cache"
        ENV["PYTHONPATH"] = src or ENV["PYTHONPATH"]
        train = [PY, "-m", "lstmbyhand", "train", path, "--target", target, "--season",
                 str(season), "--out", run, "--quiet", *extra]  # fmt: skip
        t_train = timed(train)
        t_eval = timed([PY, "-m", "lstmbyhand", "evaluate", run])
        with open(f"{run}/metrics.csv") as f:
            rows = list(csv.DictReader(f))
    return {"wall": t_train[0] + t_eval[0], "cpu": t_train[1] + t_eval[1], "epochs": len(rows),
            "own": sum(float(r["seconds"]) for r in rows)}  # fmt: skip


def machine() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        return "unknown CPU"


SPENT: dict[str, float] = {}  # label -> seconds, filled by the wrappers `instrument` installs


def instrument() -> None:
    """Wrap the functions that do each part of train + evaluate with timers (once)."""
    from lstmbyhand.forecast import baselines, plots, restore, rundir, train

    def wrap(owner, name: str, label: str) -> None:
        inner = getattr(owner, name, None)
        if inner is None:  # an older checkout (--src) without this part
            return

        def timed_call(*a, **k):
            t0 = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                SPENT[label] = SPENT.get(label, 0.0) + time.perf_counter() - t0

        setattr(owner, name, timed_call)

    wrap(baselines, "_model", "import statsforecast (first series only)")
    wrap(baselines.Statistical, "model", "fit the statistical models (incl. that import)")
    wrap(baselines.Statistical, "_forward", "statistical forecasts made (incl. the fits)")
    wrap(baselines, "recall", "cached statistical forecasts read")
    wrap(baselines, "remember", "cached statistical forecasts written")
    for method in (
        "write_weights",
        "write_state",
        "write_metrics",
        "write_config",
        "write_checkpoint",
    ):
        wrap(rundir.RunDir, method, "checkpoint files (atomic, fsync)")
    wrap(rundir.RunDir, "write_statistical", "statistical.safetensors written")
    wrap(rundir.RunDir, "read_statistical", "statistical.safetensors read")
    wrap(rundir.RunDir, "write_series", "series.safetensors written (parsed.py)")
    wrap(restore, "kept_series", "series.safetensors read, data file hashed")
    wrap(restore, "load_panel", "data file parsed (pandas)")
    wrap(train, "load_panel", "data file parsed (pandas)")
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


def table(runs: dict, up_wall: float, up_cpu: float) -> dict:
    """Print the table of one src's runs; return (series, case) -> median CPU seconds."""
    print("| series, cache | epochs | epochs' own s | train + evaluate s, wall (CPU) | reference s, "
          "epochs + 2 start-ups, wall (CPU) | ratio, wall (CPU) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    out = {}
    for (name, case), r in runs.items():
        wall, cpu = (statistics.median(x[k] for x in r) for k in ("wall", "cpu"))
        own = statistics.median(x["own"] for x in r)
        rw, rc = own + 2 * up_wall, own + 2 * up_cpu
        epochs = "-".join(sorted({str(x["epochs"]) for x in r}))
        print(f"| {name}, {case} | {epochs} | {own:.2f} | {wall:.2f} ({cpu:.2f}) | {rw:.2f} ({rc:.2f}) "
              f"| {wall / rw:.2f} ({cpu / rc:.2f}) |", flush=True)  # fmt: skip
        out[(name, case)] = cpu
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--set", nargs="*", default=[], help="train flags, e.g. hidden=16")
    ap.add_argument("--src", default=SRC, help="the src/ folder to run (default: this checkout's)")
    ap.add_argument("--against", default="", help="another src/ folder (e.g. the commit before a "
                    "change), run alternating with --src in every repeat; both tables and the "
                    "paired CPU differences, no start-up pieces or in-process parts")  # fmt: skip
    ap.add_argument("--cases", default=",".join(CASES), help=f"some of {', '.join(CASES)}")
    args = ap.parse_args()
    srcs = [os.path.abspath(args.src)] + ([os.path.abspath(args.against)] if args.against else [])
    ENV["PYTHONPATH"] = srcs[0]
    sys.path.insert(0, ENV["PYTHONPATH"])
    extra = [a for kv in args.set for a in (f"--{kv.split('=')[0]}", kv.split("=")[1])]
    settings = {k: int(v) if v.isdigit() else v for k, v in (kv.split("=") for kv in args.set)}
    paths = {n: str(files("lstmbyhand") / "datasets" / f) for n, (f, _, _) in DATASETS.items()}
    cases = [c for c in CASES if c in args.cases.split(",")]
    warm = {src: tempfile.TemporaryDirectory() for src in srcs}  # one cache per src
    if "warm" in cases:  # one untimed run per series fills the cache
        for src in srcs:
            for name, (_, target, season) in DATASETS.items():
                cli_run(paths[name], target, season, extra, warm[src].name, src)
    startup: list[tuple[float, float]] = []
    runs = {src: {(name, case): [] for name in DATASETS for case in cases} for src in srcs}
    loads = [os.getloadavg()[0]]
    for k in range(args.repeats):  # alternating: the reference, then each series, case and src
        startup.append(timed([PY, "-c", "import torch"]))
        for name, (_, target, season) in DATASETS.items():
            for case in cases:
                for src in srcs if k % 2 == 0 else srcs[::-1]:
                    cache = warm[src].name if case == "warm" else ""
                    one = cli_run(paths[name], target, season, extra, cache, src)
                    runs[src][(name, case)].append(one)
                    loads.append(os.getloadavg()[0])
    for w in warm.values():
        w.cleanup()
    ENV["PYTHONPATH"] = srcs[0]
    up_wall = statistics.median(w for w, _ in startup)
    up_cpu = statistics.median(c for _, c in startup)
    print(f"{machine()}, {os.cpu_count()} CPUs; load average (1 min) {min(loads):.1f}-"
          f"{max(loads):.1f} during the runs, median {statistics.median(loads):.1f}")  # fmt: skip
    print(f"python + torch start-up: {up_wall:.2f} s wall, {up_cpu:.2f} s CPU; median of "
          f"{args.repeats} repeats")  # fmt: skip
    cpu = {}
    for src in srcs:
        print(f"\n{src}:")
        cpu[src] = table(runs[src], up_wall, up_cpu)
    if args.against:
        print(f"\nCPU s saved by {srcs[0]} against {srcs[1]}, median of the paired differences:")
        for key in runs[srcs[0]]:
            pairs = zip(runs[srcs[1]][key], runs[srcs[0]][key], strict=True)
            saved = statistics.median(b["cpu"] - a["cpu"] for b, a in pairs)
            print(f"  {key[0]}, {key[1]}: {saved:.2f}")
        return
    print("\nstart-up pieces beyond `import torch`, CPU s (median of 5 differences, each against "
          "a plain `import torch` run just before; fresh processes):")  # fmt: skip
    for label, code in PIECES.items():
        extra_cpu = []
        for _ in range(5):
            alone = timed([PY, "-c", "import torch"])[1]
            extra_cpu.append(timed([PY, "-c", f"import torch; {code}"])[1] - alone)
        print(f"  {label}: {statistics.median(extra_cpu):.2f}", flush=True)
    print("\nin one process, seconds per part (wall):")
    import torch

    torch.set_num_threads(1)
    instrument()
    cold = tempfile.TemporaryDirectory()
    os.environ[CACHE_ENV] = cold.name
    for name, (_, target, season) in DATASETS.items():
        print(name, json.dumps(in_process(paths[name], target, season, settings)), flush=True)


if __name__ == "__main__":
    main()
