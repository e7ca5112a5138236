"""Forecast accuracy on the test split: the model against naive, seasonal naive and statsforecast.

For targets y (K, H) and forecasts ŷ (K, H), over all K·H pairs:

    MAE   = mean |y - ŷ|
    RMSE  = sqrt(mean (y - ŷ)²)
    sMAPE = mean 200 |y - ŷ| / (|y| + |ŷ|)          (percent; a 0/0 pair counts as 0)
    MASE  = MAE / mean_t |y_t - y_{t-m}|             (the denominator over the train part, m = season,
                                                      or 1 without one; < 1 beats that in-sample naive)

Baselines, for a window whose last input is at t:
    naive           ŷ_{t+h} = y_t
    seasonal_naive  ŷ_{t+h} = y_{t+h-m·⌈h/m⌉}         (the same season's last observed value)
    AutoETS, AutoARIMA, AutoTheta                      (statsforecast, season m, fitted once on
                                                        train + validation; see baselines.py)

The statistical models see the parts before the test split, so they are scored on the test split
only. Every forecaster is scored on exactly the model's test points: the same origins, the same
horizon. `best` names the one with the lowest MAE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from lstmbyhand.forecast.config import STATISTICAL
from lstmbyhand.forecast.intervals import score, statistical_quantiles
from lstmbyhand.forecast.model import Forecaster
from lstmbyhand.forecast.prepare import Prepared

METRICS = ("mae", "rmse", "smape", "mase")


def metrics(y: np.ndarray, yhat: np.ndarray, scale: float) -> dict[str, float | None]:
    """MAE, RMSE, sMAPE (%) and MASE of forecasts yhat against y, both (K, H)."""
    err = np.abs(y - yhat)
    denom = np.abs(y) + np.abs(yhat)
    ratio = np.divide(2 * err, denom, out=np.zeros_like(err), where=denom > 0)
    mae = float(err.mean())
    return {
        "mae": mae,
        "rmse": float(np.sqrt(np.mean((y - yhat) ** 2))),
        "smape": float(100 * ratio.mean()),
        "mase": mae / scale if scale > 0 else None,
    }


def mase_scale(train: np.ndarray, season: int) -> float:
    """mean |y_t - y_{t-m}| over the train part (m = season, or 1); 0 if undefined."""
    m = season if season and season < len(train) else 1
    return float(np.mean(np.abs(train[m:] - train[:-m]))) if len(train) > m else 0.0


def naive(values: np.ndarray, at: np.ndarray, horizon: int) -> np.ndarray:
    """ŷ_{t+h} = y_t: (K, H) for origins at (K,)."""
    return np.repeat(values[at][:, None], horizon, axis=1)


def seasonal_naive(values: np.ndarray, at: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """ŷ_{t+h} = y_{t+h-m·ceil(h/m)}: (K, H). Origins earlier than one season are clipped to 0."""
    h = np.arange(1, horizon + 1)  # (H,)
    back = h - season * np.ceil(h / season).astype(np.int64)  # (H,), each in (-m, 0]
    idx = np.clip(at[:, None] + back[None, :], 0, None)  # (K, H)
    return values[idx]


@torch.no_grad()
def predict(
    model: Forecaster,
    prep: Prepared,
    values: np.ndarray,
    at: np.ndarray,
    steps: int = 0,
    quantiles: bool = False,
) -> np.ndarray:
    """The model's forecasts in original units (K, S) from the origins `at` (K,) of `values`,
    S = `steps` (0: the horizon); with `quantiles`, every quantile: (K, S, Q), sorted along Q (so
    no two cross). A network that gives O < S steps at once is fed its own (median) forecasts
    back in, as if observed, each origin on its own history, O steps at a time; its past
    covariates stay those observed up to the origin (features.py)."""
    steps = steps or prep.horizon
    middle = 0  # the median's place among the quantiles (set once the model answers)
    rows = [np.asarray(values[: t + 1], dtype=np.float64) for t in at]  # histories, growing
    rounds = []
    while len(rows[0]) - at[0] - 1 < steps:
        xs = np.concatenate(
            [
                prep.inputs(r, np.array([len(r) - 1]), np.array([t]))
                for r, t in zip(rows, at, strict=True)
            ]
        )  # (K, W + W·F [+ O])
        x = np.stack([r[-prep.window :] for r in rows])  # (K, W)
        ys = model(torch.as_tensor(xs, dtype=torch.float32)).double().numpy()  # (K, O [, Q])
        if ys.ndim == 3:
            middle = model.config.quantiles.index(0.5)
        ys = ys if ys.ndim == 3 else ys[..., None]  # (K, O, Q)
        shift, scale = prep.scaler.reference(x)  # (K, 1) each
        f = np.sort(ys * scale[..., None] + shift[..., None], axis=2)  # (K, O, Q)
        rounds.append(f)
        rows = [np.concatenate([r, f[k, :, middle]]) for k, r in enumerate(rows)]
    out = np.concatenate(rounds, axis=1)[:, :steps]  # (K, S, Q)
    return out if quantiles else out[..., middle]


def forecasts(
    model: Forecaster,
    prep: Prepared,
    season: int,
    part: str = "test",
    baselines: bool = True,
    point: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Every forecaster's forecasts (K, H) from the part's origins; the statistical models only
    on the test split and with `baselines`. `point`: the model's, when already predicted."""
    values, at, H = prep.series.values, prep.origins[part], prep.steps(part)
    point = predict(model, prep, values, at, H) if point is None else point
    out = {"model": point, "naive": naive(values, at, H)}
    if season:
        out["seasonal_naive"] = seasonal_naive(values, at, H, season)
    if baselines and part == "test":
        out.update(prep.statistical.at(values, at, H))
    return out


def best_by_mae(table: dict[str, dict[str, float | None]]) -> str:
    """The method with the lowest MAE (MAE is always a number; only MASE can be undefined)."""
    return min(table, key=lambda name: table[name]["mae"] or math.inf)


@dataclass
class Scored:
    """One series' part: targets, every forecaster's forecasts, the MASE scale, and with
    quantiles the model's (and statsforecast's) quantile forecasts (K, H, Q)."""

    y: np.ndarray  # (K, H)
    forecasts: dict[str, np.ndarray]  # name -> (K, H)
    scale: float
    quantiles: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (K, H, Q)


def score_part(
    model: Forecaster, prep: Prepared, season: int, part: str = "test", baselines: bool = True
) -> Scored:
    """Every forecaster's forecasts of one part of one series (see `forecasts`), and the
    quantiles' when the model has them (statsforecast's only on the test split, with baselines)."""
    y = prep.raw(part)[1]  # (K, H)
    scale = mase_scale(prep.series.values[: prep.parts.n_train], season)
    levels = model.config.quantiles
    if not levels:
        return Scored(y, forecasts(model, prep, season, part, baselines), scale)
    values, at, H = prep.series.values, prep.origins[part], prep.steps(part)
    fq = predict(model, prep, values, at, H, quantiles=True)  # (K, H, Q)
    point = fq[..., levels.index(0.5)]
    quantiles = {"model": fq}
    if baselines and part == "test":
        quantiles.update(statistical_quantiles(prep.statistical, values, at, H, levels))
    return Scored(y, forecasts(model, prep, season, part, baselines, point), scale, quantiles)


def interval_table(scored: list[Scored], levels: list[float]) -> dict:
    """Each forecaster's quantile loss and interval coverage and width over the points of every
    scored series (a statistical model only where it has forecasts at every point)."""
    out = {}
    for name in scored[0].quantiles:
        y = np.concatenate([s.y.ravel() for s in scored])
        f = np.concatenate([s.quantiles[name].reshape(-1, len(levels)) for s in scored])
        if np.isfinite(f).all():
            out[name] = score(y[:, None], f[:, None, :], levels)
    return out


def pooled_metrics(parts: list[tuple[np.ndarray, np.ndarray, float]]) -> dict:
    """Metrics over the points of several series (or folds) together, parts (y, f, scale);
    MASE with each part's own scale."""
    y = np.concatenate([p[0].ravel() for p in parts])
    f = np.concatenate([p[1].ravel() for p in parts])
    m = metrics(y[None, :], f[None, :], 0.0)
    if all(p[2] > 0 for p in parts):
        m["mase"] = float(np.concatenate([np.abs(a - b).ravel() / c for a, b, c in parts]).mean())
    return m


def evaluate(
    model: Forecaster, prep: Prepared, season: int, part: str = "test", baselines: bool = True
) -> dict:
    """Metrics of the model and the baselines on one part; JSON-ready."""
    scored = score_part(model, prep, season, part, baselines)
    y, scale = scored.y, scored.scale
    table = {name: metrics(y, f, scale) for name, f in scored.forecasts.items()}
    levels = model.config.quantiles
    extra = {"intervals": interval_table([scored], levels)} if levels else {}
    return {
        "metrics": table,
        **extra,
        "best": best_by_mae(table),
        "split": part,
        "windows": int(len(y)),
        "points": int(y.size),
        "horizon": prep.steps(part),
        "season": season,
        "base": prep.base,
        "mase_scale": scale,
    }


def verdict(result: dict) -> str:
    """One line: which forecaster won, and the model against the best statistical one."""
    table = result["metrics"]
    best = result["best"]
    line = f"best: {best} (MAE {table[best]['mae']:.4g})"
    stats = [n for n in STATISTICAL if n in table]
    if stats:
        rival = best_by_mae({n: table[n] for n in stats})
        ratio = table["model"]["mae"] / table[rival]["mae"]
        line += f"; model / best statistical ({rival}) MAE = {ratio:.3f}"
    return line


def format_table(result: dict) -> str:
    """The metrics as aligned text, one row per forecaster."""
    lines = [f"{'':<16}{'MAE':>12}{'RMSE':>12}{'sMAPE %':>10}{'MASE':>9}"]
    for name, m in result["metrics"].items():
        cells = [_fmt(m["mae"], 12), _fmt(m["rmse"], 12), _fmt(m["smape"], 10), _fmt(m["mase"], 9)]
        lines.append(f"{name:<16}" + "".join(cells))
    return "\n".join(lines)


def _fmt(v: float | None, width: int) -> str:
    if v is None or not math.isfinite(v):
        return f"{'n/a':>{width}}"
    return f"{v:>{width}.4g}"


def evaluate_pool(model: Forecaster, pool, season: int, baselines: bool = True) -> dict:
    """`evaluate` of every series of a pool (pool.py) on its test part, and the metrics pooled
    over all their test points (MASE: each error over its own series' scale); JSON-ready."""
    scored = {m.series.id: score_part(model, m, season, "test", baselines) for m in pool.members}
    per = {}
    for key, sc in scored.items():
        per[key] = {name: metrics(sc.y, f, sc.scale) for name, f in sc.forecasts.items()}
    names = [
        n
        for n in next(iter(scored.values())).forecasts
        if all(n in sc.forecasts for sc in scored.values())
    ]
    table = {n: pooled_metrics([(sc.y, sc.forecasts[n], sc.scale) for sc in scored.values()])
             for n in names}  # fmt: skip
    levels = model.config.quantiles
    result: dict = {"metrics": table, "best": best_by_mae(table)}
    if levels:
        result["intervals"] = interval_table(list(scored.values()), levels)
        result["series_intervals"] = {k: interval_table([sc], levels) for k, sc in scored.items()}
    H = pool.members[0].horizon
    result.update({
        "series": per,
        "best_per_series": {k: best_by_mae(t) for k, t in per.items()},
        "skipped": pool.skipped,
        "split": "test",
        "windows": int(sum(len(sc.y) for sc in scored.values())),
        "points": int(sum(sc.y.size for sc in scored.values())),
        "horizon": H,
        "season": season,
        "base": pool.members[0].base,
    })  # fmt: skip
    return result


def format_intervals(intervals: dict) -> str:
    """The intervals' table: per forecaster the quantile loss, then each interval's coverage and
    width (percent keys, e.g. "80")."""
    percents = [k for k in next(iter(intervals.values())) if k != "quantile_loss"]
    head = f"{'intervals':<16}{'qloss':>12}" + "".join(
        f"{f'{p}% cover':>12}{f'{p}% width':>12}" for p in percents
    )
    lines = [head]
    for name, row in intervals.items():
        cells = [_fmt(row["quantile_loss"], 12)]
        for p in percents:
            cells += [f"{100 * row[p]['coverage']:>11.1f}%", _fmt(row[p]["width"], 12)]
        lines.append(f"{name:<16}" + "".join(cells))
    return "\n".join(lines)


def format_series(result: dict) -> str:
    """One row per series: its MAE for each forecaster, and the winner."""
    names = list(result["metrics"])
    lines = [f"{'series':<16}" + "".join(f"{n[:15]:>16}" for n in names) + "   (MAE)  best"]
    for key, table in result["series"].items():
        cells = "".join(_fmt(table[n]["mae"], 16) if n in table else f"{'':>16}" for n in names)
        lines.append(f"{key[:15]:<16}{cells}   {result['best_per_series'][key]}")
    return "\n".join(lines)


def format_series_intervals(result: dict) -> str:
    """One row per series: each forecaster's coverage of each interval ("80% model", ...)."""
    per = result["series_intervals"]
    first = next(iter(per.values()))
    cells = [(n, p) for n, row in first.items() for p in row if p != "quantile_loss"]
    lines = [f"{'coverage':<16}" + "".join(f"{f'{p}% {n}'[:15]:>16}" for n, p in cells)]
    for key, table in per.items():
        row = "".join(
            f"{100 * table[n][p]['coverage']:>15.1f}%" if n in table else f"{'n/a':>16}"
            for n, p in cells
        )
        lines.append(f"{key[:15]:<16}{row}")
    return "\n".join(lines)
