"""Covariates as the network sees them: scaled on the train part only, calendar features, step rows.

For a window ending at origin t, the LSTM's input at step s (t-W+1 ≤ s ≤ t) is

    [y'_s,  p'_min(s, t₀),  f'_{s+1},  c_{s+1}]

y' the scaled target (scaling.py); p' the past covariates, observed up to the origin t₀ of the
forecast (when a forecast is fed back in past t₀, they are held at their last observed value
p'_{t₀}); f' the known-future covariates and c the calendar features of the NEXT step, so the
last step of the window sees the covariates of the step it forecasts. Calendar features come from
the time column: for each name (config.CALENDAR) sin and cos of 2π·value/period.

Covariates are scaled per series and column, z = (v - μ) / σ, with μ and σ of the series' train
part (σ = 1 when it is 0): nothing after the train part is looked at.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lstmbyhand.errors import UserError
from lstmbyhand.forecast.config import CALENDAR


@dataclass(frozen=True)
class CovariateScaler:
    """μ and σ per covariate column, fitted on one series' train part."""

    center: list[float]
    scale: list[float]

    @classmethod
    def fit(cls, train: np.ndarray) -> CovariateScaler:
        """train (n_train, C) -> the columns' means and stds (1 where a std is 0)."""
        mean, std = train.mean(axis=0), train.std(axis=0)
        return cls([float(m) for m in mean], [float(s) if s > 0 else 1.0 for s in std])

    def transform(self, values: np.ndarray) -> np.ndarray:
        """(N, C) raw -> (N, C) scaled."""
        return (values - np.asarray(self.center)) / np.asarray(self.scale)

    def to_dict(self) -> dict:
        return {"center": self.center, "scale": self.scale}

    @classmethod
    def from_dict(cls, d: dict, columns: int, where: str) -> CovariateScaler:
        try:
            scaler = cls([float(v) for v in d["center"]], [float(v) for v in d["scale"]])
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{where}: a covariate scaler is damaged; train again") from None
        if len(scaler.center) != columns or len(scaler.scale) != columns:
            raise UserError(f"{where}: a covariate scaler has the wrong size; train again")
        if not all(np.isfinite(scaler.center)) or not all(s > 0 for s in scaler.scale):
            raise UserError(f"{where}: a covariate scaler is not finite; train again")
        return scaler


def calendar(stamps: object, names: list[str], column: str | None) -> np.ndarray:
    """(N, 2K): sin and cos of 2π·value/period for each calendar feature of the time stamps."""
    if not names:
        return np.zeros((len(stamps), 0))  # type: ignore[arg-type]
    import pandas as pd  # only with calendar features (a run's stored series have no dates)

    if not isinstance(stamps, pd.DatetimeIndex):
        raise UserError(
            f"--calendar {','.join(names)} needs a time column of dates; "
            + (f"{column!r} holds numbers" if column else "the data has no time column")
        )
    out = []
    for name in names:
        angle = 2 * np.pi * np.asarray(getattr(stamps, name), dtype=np.float64) / CALENDAR[name]
        out += [np.sin(angle), np.cos(angle)]
    return np.stack(out, axis=1)


@dataclass
class Covariates:
    """One series' scaled covariates: past (N, Cp) and the known future (M, Cf + 2K), M ≥ N."""

    past: np.ndarray  # (N, Cp)
    future: np.ndarray  # (M, Cf + 2K): future covariates, then calendar features

    @property
    def features(self) -> int:
        return self.past.shape[1] + self.future.shape[1]

    def rows(self, at: np.ndarray, since: np.ndarray, window: int) -> np.ndarray:
        """The covariate inputs of the windows ending at `at` (K,), each observed up to its
        `since` (K,): (K, W, F), rows as in the module docstring."""
        steps = at[:, None] + np.arange(-window + 1, 1)[None, :]  # (K, W)
        past = self.past[np.minimum(steps, since[:, None])]  # (K, W, Cp)
        if not self.future.shape[1]:
            return past
        return np.concatenate([past, self.future[steps + 1]], axis=2)  # (K, W, Cp + Cf + 2K)

    def known(self) -> float:
        """The time steps with known-future inputs: M (unlimited when there are none)."""
        return len(self.future) if self.future.shape[1] else np.inf

    def extended(self, future: np.ndarray) -> Covariates:
        """The same, with scaled future rows (S, Cf + 2K) appended after the M known ones."""
        return Covariates(self.past, np.concatenate([self.future, future]))
