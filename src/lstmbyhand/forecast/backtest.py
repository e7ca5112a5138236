"""Rolling-origin evaluation: K folds, each one trained and evaluated afresh on the past it had.

    fold k = 1..K: the series cut after N_k = N - (K - k)·n_test values (n_test, n_val: the sizes
    of the ordinary split of the whole series); the fold's last n_test values are its test part,
    the n_val before them its validation part, the rest its training part. Fold K is the
    ordinary split; the folds' test parts tile the last K·n_test values without overlap.

Every fold refits everything on its own data: the network (a full `train` into OUT/fold-k, from
OUT/fold-k.csv, the cut series) and the statistical models (on its train + validation part).
Its metrics are `evaluate`'s; the pooled metrics are over all folds' test points together
(MASE: each error divided by its own fold's in-sample scale).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from lstmbyhand.errors import UserError
from lstmbyhand.forecast.config import TrainSettings
from lstmbyhand.forecast.evaluate import best_by_mae, forecasts, mase_scale, metrics
from lstmbyhand.forecast.prepare import load_series
from lstmbyhand.forecast.restore import open_run
from lstmbyhand.forecast.train import train
from lstmbyhand.forecast.windows import split_sizes


def fold_settings(s: TrainSettings, n: int, folds: int) -> list[tuple[int, TrainSettings]]:
    """(N_k, settings of fold k) for k = 1..K: the same n_val and n_test values in every fold."""
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 1:
        raise UserError(f"--folds must be a whole number ≥ 1, got {folds!r}")
    if s.test_fraction == 0:
        raise UserError("--test-fraction 0 leaves the folds nothing to test; give a test part")
    whole = split_sizes(n, s.val_fraction, s.test_fraction)
    out = []
    for k in range(1, folds + 1):
        length = n - (folds - k) * whole.n_test
        val, test = whole.n_val / length, whole.n_test / length
        if length <= 0 or val + test >= 1:
            raise UserError(
                f"--folds {folds} leaves fold {k} with {max(length, 0)} of the {n} values, no "
                "room for a training part; use fewer --folds"
            )
        out.append((length, replace(s, val_fraction=val, test_fraction=test)))
    return out


def write_cut(series, length: int, path: Path) -> None:
    """The first `length` values (and their time stamps) as a CSV of the same columns."""
    columns = {series.target: series.values[:length]}
    if series.time_column:
        columns = {series.time_column: np.asarray(series.time)[:length], **columns}
    pd.DataFrame(columns).to_csv(path, index=False)


def backtest(
    s: TrainSettings, folds: int, out: str | Path, baselines: bool = True, force: bool = False
) -> dict:
    """Train and evaluate K folds into OUT; per-fold and pooled metrics, JSON-ready."""
    series = load_series(s)
    out = Path(out)
    plan = fold_settings(s, len(series), folds)
    out.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    pooled: dict[str, list[tuple[np.ndarray, np.ndarray, float]]] = {}
    for k, (length, fs) in enumerate(plan, start=1):
        data = out / f"fold-{k}.csv"
        write_cut(series, length, data)
        fs = replace(fs, data=str(data), time=series.time_column or "", fill="none")
        train(fs, out / f"fold-{k}", force=force, quiet=True)
        model, _, config, prep = open_run(out / f"fold-{k}")
        y = prep.raw("test")[1]  # (K_k, H)
        scale = mase_scale(prep.series.values[: prep.parts.n_train], config.season)
        fc = forecasts(model, prep, config.season, "test", baselines)
        table = {name: metrics(y, f, scale) for name, f in fc.items()}
        first, last = prep.origins["test"][[0, -1]] + 1
        results.append({"fold": k, "length": length, "test": [int(first), int(last)],
                        "points": int(y.size), "metrics": table})  # fmt: skip
        for name, f in fc.items():
            pooled.setdefault(name, []).append((y, f, scale))
    table = {name: _pooled(parts) for name, parts in pooled.items()}
    return {
        "folds": results,
        "pooled": table,
        "best": best_by_mae(table),
        "refit": "every fold: the network and the statistical models",
        "horizon": s.horizon,
    }


def _pooled(parts: list[tuple[np.ndarray, np.ndarray, float]]) -> dict:
    """Metrics over the points of every fold; MASE with each fold's own scale."""
    y = np.concatenate([p[0].ravel() for p in parts])
    f = np.concatenate([p[1].ravel() for p in parts])
    m = metrics(y[None, :], f[None, :], 0.0)
    if all(p[2] > 0 for p in parts):
        m["mase"] = float(np.concatenate([np.abs(a - b).ravel() / c for a, b, c in parts]).mean())
    return m
