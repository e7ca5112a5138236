"""Does refitting pay? Rolling-origin test MAE of the 70 % models against their refits.

    PYTHONPATH=src .venv/bin/python benchmarks/refit.py [--cases airline:1 nile:1 lynx:1 airline:12]
        [--folds 3] [--seeds 0] [--set base=none ...]

For each fold of the backtest (`forecast/backtest.py`: K cuts of the series, each with the ordinary
split; the test parts tile the series' end) and seed: `train` with the CLI's defaults (the series'
season, the horizon) gives the evaluated model, trained on the first 70 % of the fold; its refit is
`refit.fit` on everything before the fold's test part (train + validation, the scaler fitted on all
of it) for the epoch count early stopping chose, the head zeroed when the base was kept. Both are
scored on the same test points with the same base (fitted on train + validation). Prints one JSON
line per fold, then a markdown table of pooled MAE (all folds' test points together).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from importlib.resources import files
from pathlib import Path

import numpy as np
import torch

from lstmbyhand.forecast.backtest import fold_settings, write_cut
from lstmbyhand.forecast.config import TrainSettings
from lstmbyhand.forecast.evaluate import forecasts
from lstmbyhand.forecast.model import Forecaster
from lstmbyhand.forecast.prepare import load_series, prepare
from lstmbyhand.forecast.refit import fit, whole, zero_head
from lstmbyhand.forecast.restore import open_run
from lstmbyhand.forecast.rundir import RunDir
from lstmbyhand.forecast.train import train

BUNDLED = {"airline": ("airline.csv", "passengers", 12), "nile": ("nile.csv", "flow", 0),
           "lynx": ("lynx.csv", "trappings", 10)}  # fmt: skip


def fold(fs: TrainSettings, out: Path) -> dict:
    """One fold: the evaluated model's and its refit's test forecasts, with the truth."""
    result = train(fs, out / "run", quiet=True)
    model, settings, config, prep = open_run(out / "run")
    y = prep.raw("test")[1]  # (K, H)
    kept = RunDir(out / "run").read_weights()[1].get("kept", "network")
    epochs = result.progress.best_epoch
    write_cut(prep.series, prep.split.test_start, out / "before-test.csv")
    before = load_series(replace(settings, data=str(out / "before-test.csv")))
    weights, _ = fit(settings, whole(settings, before, config.season), epochs)
    if kept == "base":
        weights = zero_head(weights)
    refit_model = Forecaster(config.model)
    refit_model.load_state_dict(weights)
    refit_model.eval()
    refit_prep = prepare(settings, prep.series, whole(settings, before, config.season).scaler)
    return {
        "y": y,
        "evaluated": forecasts(model, prep, config.season, "test", False)["model"],
        "refit": forecasts(refit_model, refit_prep, config.season, "test", False)["model"],
        "naive": forecasts(model, prep, config.season, "test", False)["naive"],
        "epochs": epochs,
        "kept": kept,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", nargs="+", default=["airline:1", "nile:1", "lynx:1"])
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--set", nargs="*", default=[], help="settings, e.g. base=none hidden=8")
    args = ap.parse_args()
    torch.set_num_threads(1)
    defaults = TrainSettings("", "")
    extra = {k: type(getattr(defaults, k))(v) for k, v in (kv.split("=") for kv in args.set)}
    rows = []
    for case in args.cases:
        name, horizon = case.split(":")
        file, target, season = BUNDLED[name]
        path = str(files("lstmbyhand") / "datasets" / file)
        errors = {"evaluated": [], "refit": [], "naive": []}
        t0 = time.perf_counter()
        for seed in args.seeds:
            s = TrainSettings(path, target, season=season, horizon=int(horizon), seed=seed, **extra)
            series = load_series(s)
            for k, (length, fs) in enumerate(fold_settings(s, len(series), args.folds), 1):
                with tempfile.TemporaryDirectory() as d:
                    write_cut(series, length, Path(d) / "fold.csv")
                    fs = replace(fs, data=str(Path(d) / "fold.csv"), time=series.time_column or "")
                    r = fold(fs, Path(d))
                mae = {m: float(np.abs(r[m] - r["y"]).mean()) for m in errors}
                for m in errors:
                    errors[m].append(np.abs(r[m] - r["y"]).ravel())
                print(json.dumps({"case": case, "seed": seed, "fold": k, "epochs": r["epochs"],
                                  "kept": r["kept"], "mae": mae}), flush=True)  # fmt: skip
        pooled = {m: float(np.concatenate(e).mean()) for m, e in errors.items()}
        rows.append((case, pooled, time.perf_counter() - t0))
    print("\n| series:horizon | 70 % model MAE | refit MAE | refit / 70 % | naive MAE |")
    print("|---|---|---|---|---|")
    for case, p, _ in rows:
        print(f"| {case} | {p['evaluated']:.4g} | {p['refit']:.4g} | "
              f"{p['refit'] / p['evaluated']:.3f} | {p['naive']:.4g} |")  # fmt: skip
    print(
        f"\n{args.folds} folds, seeds {args.seeds}, {args.set or 'defaults'}; pooled over all "
        "folds' test points"
    )


if __name__ == "__main__":
    main()
