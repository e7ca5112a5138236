"""Measure the forecaster against the naive forecast on real series, for each `--scaling`.

    PYTHONPATH=src .venv/bin/python benchmarks/forecast_quality.py [--seeds 0 1 2] [--scalings ...]

Prints a markdown table: test-split MAE of the model and of the naive / seasonal-naive baselines.
Every run uses the CLI's defaults except the dataset's --season.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from importlib.resources import files

import torch

from lstmbyhand.forecast.evaluate import evaluate
from lstmbyhand.forecast.restore import open_run
from lstmbyhand.forecast.config import TrainSettings
from lstmbyhand.forecast.train import train

DATASETS = {  # name: (file, target, season, first rows only)
    "airline (trend + season)": ("airline.csv", "passengers", 12, None),
    "nile (noisy, short)": ("nile.csv", "flow", 0, None),
    "nile 1871-1930 (noisy, 60 values)": ("nile.csv", "flow", 0, 60),
    "lynx (cycles, noisy)": ("lynx.csv", "trappings", 10, None),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--scalings", nargs="+", default=["global", "last", "window"])
    ap.add_argument("--set", nargs="*", default=[], help="extra settings, e.g. window=12")
    args = ap.parse_args()
    torch.set_num_threads(1)  # tiny models: more threads only add contention
    extra = {k: type(getattr(TrainSettings("", ""), k) or 0)(v) for k, v in
             (kv.split("=") for kv in args.set)}  # fmt: skip
    rows = []
    tmp = tempfile.TemporaryDirectory()
    for name, (file, target, season, head) in DATASETS.items():
        path = str(files("lstmbyhand") / "datasets" / file)
        if head:
            lines = open(path).read().splitlines()[: head + 1]
            path = f"{tmp.name}/{file}"
            open(path, "w").write("\n".join(lines) + "\n")
        for scaling in args.scalings:
            for seed in args.seeds:
                s = TrainSettings(path, target, season=season, scaling=scaling, seed=seed, **extra)
                with tempfile.TemporaryDirectory() as out:
                    t0 = time.perf_counter()
                    r = train(s, out, quiet=True)
                    secs = time.perf_counter() - t0
                    model, _, config, prep = open_run(out)
                    m = evaluate(model, prep, season)["metrics"]
                row = {"data": name, "scaling": scaling, "seed": seed, "epochs": r.progress.epoch,
                       "seconds": round(secs, 1)}  # fmt: skip
                row.update({f"{k}_mae": round(v["mae"], 2) for k, v in m.items()})
                row["model_mase"] = round(m["model"]["mase"], 3)
                print(json.dumps(row), flush=True)
                rows.append(row)
    print("\n| series | scaling | seed | model MAE | naive MAE | seasonal naive MAE | model MASE |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        sn = r.get("seasonal_naive_mae", "–")
        print(f"| {r['data']} | {r['scaling']} | {r['seed']} | {r['model_mae']} | {r['naive_mae']} "
              f"| {sn} | {r['model_mase']} |")  # fmt: skip


if __name__ == "__main__":
    main()
