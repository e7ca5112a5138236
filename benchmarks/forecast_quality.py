"""The forecaster against every baseline on real series: test MAE, mean (min-max) over seeds.

    PYTHONPATH=src .venv/bin/python benchmarks/forecast_quality.py [--seeds 0 1 2]
        [--cases airline:1 airline:12 nile:1 lynx:1] [--set hidden=16 base=none ...]
        [--data NAME=FILE,TARGET,SEASON ...]

Each case trains `lstmbyhand train` with the CLI's defaults (except the series' --season, the
horizon and --set) once per seed, evaluates the test split, and prints one JSON line per run, then
a markdown table: the model's test MAE, mean (min-max) over the seeds, beside naive, seasonal
naive, AutoETS, AutoARIMA and AutoTheta (statsforecast, fitted on train + validation, scored on
the same points), and the model's mean over the best statistical model's MAE.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from importlib.resources import files

import torch

from lstmbyhand.forecast.config import STATISTICAL, TrainSettings
from lstmbyhand.forecast.evaluate import evaluate
from lstmbyhand.forecast.restore import open_run
from lstmbyhand.forecast.train import train

BUNDLED = {"airline": ("airline.csv", "passengers", 12), "nile": ("nile.csv", "flow", 0),
           "lynx": ("lynx.csv", "trappings", 10)}  # fmt: skip
BASELINES = ("naive", "seasonal_naive", *STATISTICAL)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--cases", nargs="+", default=["airline:1", "airline:12", "nile:1", "lynx:1"])
    ap.add_argument("--set", nargs="*", default=[], help="settings, e.g. hidden=16 base=none")
    ap.add_argument("--data", nargs="*", default=[], help="more series: NAME=FILE,TARGET,SEASON")
    args = ap.parse_args()
    torch.set_num_threads(1)  # tiny models: more threads only add contention
    datasets = {k: (str(files("lstmbyhand") / "datasets" / f), t, m) for k, (f, t, m) in
                BUNDLED.items()}  # fmt: skip
    for spec in args.data:
        name, rest = spec.split("=", 1)
        path, target, season = rest.split(",")
        datasets[name] = (path, target, int(season))
    defaults = TrainSettings("", "")
    extra = {k: type(getattr(defaults, k))(v) for k, v in (kv.split("=") for kv in args.set)}
    rows = []
    for case in args.cases:
        name, horizon = case.split(":")
        path, target, season = datasets[name]
        runs = []
        for seed in args.seeds:
            s = TrainSettings(path, target, season=season, horizon=int(horizon), seed=seed, **extra)
            with tempfile.TemporaryDirectory() as out:
                t0 = time.perf_counter()
                r = train(s, out, quiet=True)
                secs = time.perf_counter() - t0
                model, _, config, prep = open_run(out)
                m = evaluate(model, prep, config.season)["metrics"]
            run = {"case": case, "seed": seed, "epochs": r.progress.epoch,
                   "best_epoch": r.progress.best_epoch, "seconds": round(secs, 1),
                   **{f"{k}_mae": round(v["mae"], 3) for k, v in m.items()}}  # fmt: skip
            print(json.dumps(run), flush=True)
            runs.append(run)
        rows.append((case, runs))
    print(
        f"\nsettings: defaults{' + ' + ' '.join(args.set) if args.set else ''}; seeds {args.seeds}"
    )
    print("| series:horizon | model MAE, mean (min-max) | " + " | ".join(BASELINES) +
          " | model / best statistical |")  # fmt: skip
    print("|---" * (len(BASELINES) + 3) + "|")
    for case, runs in rows:
        model = [r["model_mae"] for r in runs]
        mean = sum(model) / len(model)
        cells = [f"{runs[0].get(f'{b}_mae', float('nan')):.4g}" for b in BASELINES]
        best = min(runs[0][f"{b}_mae"] for b in STATISTICAL)
        print(f"| {case} | {mean:.4g} ({min(model):.4g}-{max(model):.4g}) | " + " | ".join(cells)
              + f" | {mean / best:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
