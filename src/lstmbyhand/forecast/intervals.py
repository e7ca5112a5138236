"""Prediction intervals: how the quantile forecasts are scored, and statsforecast's on the same points.

For quantile levels q_1 < ... < q_Q and forecasts ŷ (K, H, Q) of targets y (K, H):

    pinball   L_q(y, ŷ_q) = max(q (y - ŷ_q), (q - 1)(y - ŷ_q))
    quantile loss  = mean over the K·H points and the Q levels of L_q      (lower is better)

Each pair of levels symmetric about 0.5 (q, 1 - q), q < 0.5, is a central interval of nominal
coverage 1 - 2q (0.1 and 0.9: 80 %):

    coverage  = share of points with ŷ_q ≤ y ≤ ŷ_{1-q}        (near 1 - 2q when calibrated)
    width     = mean (ŷ_{1-q} - ŷ_q)                           (narrower is better, at that coverage)

statsforecast's AutoETS and AutoARIMA give the same levels: `forward(history, H, level=[100(1 - 2q)])`
from each origin, with the parameters fitted before the test split (baselines.py), its `lo-L` and
`hi-L` as the quantiles q and 1 - q and its mean as the median.
"""

from __future__ import annotations

import warnings

import numpy as np

from lstmbyhand.forecast.baselines import Statistical

INTERVAL_MODELS = ("AutoETS", "AutoARIMA")  # statsforecast models whose intervals are reported


def pinball(y: np.ndarray, f: np.ndarray, levels: list[float]) -> np.ndarray:
    """L_q per point and level: y (K, H), f (K, H, Q) -> (K, H, Q)."""
    q = np.asarray(levels, dtype=np.float64)  # (Q,)
    e = y[..., None] - f  # (K, H, Q)
    return np.maximum(q * e, (q - 1) * e)


def pairs(levels: list[float]) -> list[tuple[int, int, int]]:
    """(index of q, index of 1 - q, nominal percent) for each central interval of the levels."""
    out = []
    for i, q in enumerate(levels):
        j = next((j for j, p in enumerate(levels) if abs(p - (1 - q)) < 1e-9), None)
        if q < 0.5 and j is not None:
            out.append((i, j, int(round(100 * (1 - 2 * q)))))
    return out


def score(y: np.ndarray, f: np.ndarray, levels: list[float]) -> dict:
    """The quantile loss and each interval's coverage and width (JSON-ready): y (K, H),
    f (K, H, Q); intervals keyed by their nominal percent ("80")."""
    out: dict = {"quantile_loss": float(pinball(y, f, levels).mean())}
    for i, j, percent in pairs(levels):
        inside = (f[..., i] <= y) & (y <= f[..., j])
        out[str(percent)] = {"coverage": float(inside.mean()),
                             "width": float((f[..., j] - f[..., i]).mean())}  # fmt: skip
    return out


def statistical_quantiles(
    stat: Statistical, values: np.ndarray, at: np.ndarray, horizon: int, levels: list[float]
) -> dict[str, np.ndarray]:
    """AutoETS' and AutoARIMA's forecasts (K, H, Q) at the levels (0.5: the mean), from each
    origin of `at` (K,); NaN where a model has none (its history too short)."""
    percents = {i: p for i, _, p in pairs(levels)} | {j: p for _, j, p in pairs(levels)}
    out = {}
    for name in INTERVAL_MODELS:
        model = stat.model(name)
        rows = np.full((len(at), horizon, len(levels)), np.nan)
        for k, t in enumerate(at):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    got = model.forward(
                        values[: t + 1], horizon, level=sorted(set(percents.values()))
                    )
                except (ValueError, IndexError, NotImplementedError):
                    continue
            for c, q in enumerate(levels):
                key = "mean" if q == 0.5 else f"{'lo' if q < 0.5 else 'hi'}-{percents.get(c)}"
                if key in got:
                    rows[k, :, c] = np.asarray(got[key], dtype=np.float64)
        out[name] = rows
    return out
