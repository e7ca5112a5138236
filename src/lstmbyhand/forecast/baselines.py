"""Statistical forecasts from Nixtla's statsforecast: AutoETS, AutoARIMA, AutoTheta.

Each model is fitted once, on values y_0 .. y_{n-1} (for the test split: everything before it,
train + validation), with the season m as its season length. Its forecast from origin t is then

    ŷ_{t+1..t+H} = model.forward(y_0 .. y_t, H)

with the fitted parameters kept (statsforecast's `forward`: the states are filtered over the given
history, nothing is re-estimated), so a forecast from t uses only data up to t -- the same as
statsforecast's `cross_validation(h=H, step_size=1, refit=False)` from the fit's end on.

They serve twice: as baselines in `evaluate`, and as the base the forecaster can learn the residual
of (see `model.py`): `combine` joins them into one base, the point-wise median by default.
An origin whose history is too short for a model (AutoARIMA with a season needs more than one
season) leaves that model out of the combination there; with none left, the base is the naive
forecast ŷ_{t+h} = y_t.
"""

from __future__ import annotations

import warnings

import numpy as np

from lstmbyhand.forecast.config import STATISTICAL


def _model(name: str, season: int):
    from statsforecast import models  # imported here: ~1 s, only runs that use it pay

    return getattr(models, name)(season_length=max(int(season), 1))


class Statistical:
    """The statsforecast models, each fitted on first use on one stretch `train` of a series."""

    def __init__(self, train: np.ndarray, season: int) -> None:
        self.train = np.asarray(train, dtype=np.float64)  # (n,): y_0 .. y_{n-1}
        self.season = int(season)
        self.fitted: dict[str, object] = {}

    def model(self, name: str):
        """`name` (one of STATISTICAL) fitted on `train` with season length `season` (0: none)."""
        if name not in self.fitted:
            with warnings.catch_warnings():  # statsforecast warns on divisions it handles itself
                warnings.simplefilter("ignore")
                self.fitted[name] = _model(name, self.season).fit(self.train)
        return self.fitted[name]

    def forecast(self, name: str, history: np.ndarray, horizon: int) -> np.ndarray | None:
        """The model's forecast (H,) after `history`, or None if the history is too short for it."""
        model = self.model(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out = model.forward(np.asarray(history, np.float64), horizon)["mean"]
            except (ValueError, IndexError, NotImplementedError):
                return None
        out = np.asarray(out, dtype=np.float64)
        return out if out.shape == (horizon,) and np.isfinite(out).all() else None

    def at(
        self, values: np.ndarray, origins: np.ndarray, horizon: int, names=STATISTICAL
    ) -> dict[str, np.ndarray]:
        """Each model's forecasts (K, H) from the origins (K,); NaN rows where it has none."""
        out = {}
        for name in names:
            rows = [self.forecast(name, values[: t + 1], horizon) for t in origins]
            out[name] = np.stack([r if r is not None else np.full(horizon, np.nan) for r in rows])
        return out

    def base(self, how: str, values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
        """The base `how` (see `combine`) from the origins (K,): (K, H)."""
        names = STATISTICAL if how in ("median", "mean") else (how,)
        return combine(self.at(values, origins, horizon, names), how, values[origins])


def combine(forecasts: dict[str, np.ndarray], how: str, last: np.ndarray) -> np.ndarray:
    """One base (K, H) from forecasts {name: (K, H)}: their point-wise median, or their mean for
    `how` = "mean" (a single model: itself), over the models that have a forecast there; the
    naive forecast `last` (K,) = y_t where none has."""
    stack = np.stack(list(forecasts.values()))  # (models, K, H)
    with warnings.catch_warnings():  # all-NaN columns: filled with the naive forecast below
        warnings.simplefilter("ignore", RuntimeWarning)
        base = np.nanmedian(stack, axis=0) if how == "median" else np.nanmean(stack, axis=0)
    return np.where(np.isnan(base), last[:, None], base)  # (K, H)
