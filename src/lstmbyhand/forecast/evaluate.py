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

import numpy as np
import torch

from lstmbyhand.forecast.config import STATISTICAL
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
    model: Forecaster, prep: Prepared, values: np.ndarray, at: np.ndarray, steps: int = 0
) -> np.ndarray:
    """The model's forecasts in original units (K, S) from the origins `at` (K,) of `values`,
    S = `steps` (0: the horizon). A network that gives O < S steps at once is fed its own
    forecasts back in, as if observed, each origin on its own history, O steps at a time."""
    steps = steps or prep.horizon
    rows = [np.asarray(values[: t + 1], dtype=np.float64) for t in at]  # histories, growing
    while len(rows[0]) - at[0] - 1 < steps:
        xs = np.concatenate([prep.inputs(r, np.array([len(r) - 1])) for r in rows])  # (K, W [+ O])
        x = np.stack([r[-prep.window :] for r in rows])  # (K, W)
        ys = model(torch.as_tensor(xs, dtype=torch.float32)).double().numpy()  # (K, O)
        f = prep.scaler.inverse(ys, x)  # (K, O)
        rows = [np.concatenate([r, f[k]]) for k, r in enumerate(rows)]
    return np.stack([r[t + 1 : t + 1 + steps] for r, t in zip(rows, at, strict=True)])  # (K, S)


def forecasts(
    model: Forecaster, prep: Prepared, season: int, part: str = "test", baselines: bool = True
) -> dict[str, np.ndarray]:
    """Every forecaster's forecasts (K, H) from the part's origins; the statistical models only
    on the test split and with `baselines`."""
    values, at, H = prep.series.values, prep.origins[part], prep.steps(part)
    out = {"model": predict(model, prep, values, at, H), "naive": naive(values, at, H)}
    if season:
        out["seasonal_naive"] = seasonal_naive(values, at, H, season)
    if baselines and part == "test":
        out.update(prep.statistical.at(values, at, H))
    return out


def best_by_mae(table: dict[str, dict[str, float | None]]) -> str:
    """The method with the lowest MAE (MAE is always a number; only MASE can be undefined)."""
    return min(table, key=lambda name: table[name]["mae"] or math.inf)


def evaluate(
    model: Forecaster, prep: Prepared, season: int, part: str = "test", baselines: bool = True
) -> dict:
    """Metrics of the model and the baselines on one part; JSON-ready."""
    y = prep.raw(part)[1]  # (K, H)
    scale = mase_scale(prep.series.values[: prep.parts.n_train], season)
    table = {
        name: metrics(y, f, scale)
        for name, f in forecasts(model, prep, season, part, baselines).items()
    }
    return {
        "metrics": table,
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
