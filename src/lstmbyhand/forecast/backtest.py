"""Rolling-origin evaluation: K folds, each one trained and evaluated afresh on the past it had.

    fold k = 1..K: the series cut after N_k = N - (K - k)·n_test values (n_test, n_val: the sizes
    of the ordinary split of the whole series); the fold's last n_test values are its test part,
    the n_val before them its validation part, the rest its training part. Fold K is the
    ordinary split; the folds' test parts tile the last K·n_test values without overlap.

Every fold refits everything on its own data: the network (a full `train` into OUT/fold-k, from
OUT/fold-k.csv, the cut series) and the statistical models (on its train + validation part).
Its metrics are `evaluate`'s; the pooled metrics are over all folds' test points together
(MASE: each error divided by its own fold's in-sample scale).

Many series: each series i is cut the same way by its own n_test,i (fold k keeps its first
n_i - (K - k)·n_test,i values), written as long data (id, time, target, covariates) into
OUT/fold-k.csv, and the fold's fractions are the first series'; with series of equal length
(the bundled macro.csv) every series' folds tile its end exactly. A fold's metrics are pooled over
its series, the final ones over every fold's and series' test points.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from lstmbyhand.errors import UserError
from lstmbyhand.forecast.config import TrainSettings
from lstmbyhand.forecast.evaluate import best_by_mae, metrics, pooled_metrics, score_part
from lstmbyhand.forecast.panel import Panel
from lstmbyhand.forecast.pool import load_panel
from lstmbyhand.forecast.restore import open_pool
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


def write_panel_cut(s: TrainSettings, panel: Panel, fold: int, folds: int, path: Path) -> dict:
    """Every series' first n_i - (K - fold)·n_test,i values as long data; returns the settings'
    fields that read it (id, target, time)."""
    id_name = panel.id_column or "series"
    target = panel.series[0].target if panel.layout == "long" else "value"
    names = s.past_covariates + s.future_covariates
    frames = []
    for x in panel.series:
        n_test = split_sizes(len(x), s.val_fraction, s.test_fraction).n_test
        n = len(x) - (folds - fold) * n_test
        columns: dict = {id_name: [x.id] * n}
        if x.time_column:
            columns[x.time_column] = np.asarray(x.time)[:n]
        columns[target] = x.values[:n]
        for c, name in enumerate(names):
            columns[name] = x.covariates[:n, c]  # type: ignore[index]
        frames.append(pd.DataFrame(columns))
    pd.concat(frames, ignore_index=True).to_csv(path, index=False)
    return {"id": id_name, "target": target, "time": panel.series[0].time_column or ""}


def backtest(
    s: TrainSettings, folds: int, out: str | Path, baselines: bool = True, force: bool = False
) -> dict:
    """Train and evaluate K folds into OUT; per-fold and pooled metrics, JSON-ready."""
    panel = load_panel(s)
    many = panel.layout != "single"
    series = panel.series[0]
    out = Path(out)
    plan = fold_settings(s, len(series), folds)
    out.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    pooled: dict[str, list[tuple[np.ndarray, np.ndarray, float]]] = {}
    for k, (length, fs) in enumerate(plan, start=1):
        data = out / f"fold-{k}.csv"
        if many:
            fs = replace(
                fs, data=str(data), fill="none", **write_panel_cut(s, panel, k, folds, data)
            )
        else:
            write_cut(series, length, data)
            fs = replace(fs, data=str(data), time=series.time_column or "", fill="none")
        train(fs, out / f"fold-{k}", force=force, quiet=True)
        model, _, config, pool = open_pool(out / f"fold-{k}")
        scored = [score_part(model, m, config.season, "test", baselines) for m in pool.members]
        parts = {name: [(sc.y, sc.forecasts[name], sc.scale) for sc in scored]
                 for name in scored[0].forecasts}  # fmt: skip
        if many:
            table = {name: pooled_metrics(p) for name, p in parts.items()}
        else:
            table = {name: metrics(*p[0]) for name, p in parts.items()}
        first, last = pool.members[0].origins["test"][[0, -1]] + 1
        results.append({"fold": k, "length": length, "test": [int(first), int(last)],
                        "points": int(sum(sc.y.size for sc in scored)),
                        "metrics": table})  # fmt: skip
        for name, p in parts.items():
            pooled.setdefault(name, []).extend(p)
    table = {name: pooled_metrics(parts) for name, parts in pooled.items()}
    return {
        "folds": results,
        "pooled": table,
        "best": best_by_mae(table),
        "refit": "every fold: the network and the statistical models",
        "horizon": s.horizon,
        **({"series": len(panel.series)} if many else {}),
    }
