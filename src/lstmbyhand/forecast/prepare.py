"""Settings + a series -> split, scaler, base and the windows of each part, ready for the network.

The same function serves training and every later command: `train` fits the scaler on the train
part; `evaluate`, `forecast` and `inspect` pass the scaler saved in config.json instead. The
statistical models of the base (`--base`, see `baselines.py`) are fitted on everything before the
test split (train + validation; the whole series when it is not split), on first use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from lstmbyhand.forecast.baselines import Statistical
from lstmbyhand.forecast.config import ModelConfig, TrainSettings
from lstmbyhand.forecast.data import Series, read_series
from lstmbyhand.forecast.features import Covariates, CovariateScaler, calendar
from lstmbyhand.forecast.scaling import Scaler
from lstmbyhand.forecast.windows import Split, make_split, split_origins, windows


@dataclass
class Prepared:
    """A split series, its scaler, its base and the origins of the train / val / test windows."""

    series: Series
    split: Split | None
    scaler: Scaler
    origins: dict[str, np.ndarray]  # part -> (K,)
    window: int
    horizon: int
    base: str = "none"  # ModelConfig.base
    season: int = 0
    outputs: int = 0  # the network's forecasts per pass (ModelConfig.outputs); 0: the horizon
    covariates: Covariates | None = None  # scaled (features.py); None: the target alone
    covariate_scaler: CovariateScaler | None = None  # fitted on the train part
    statistical: Statistical = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.outputs = self.outputs or self.horizon
        n = self.split.test_start if self.split else len(self.series)
        self.statistical = Statistical(self.series.values[:n], self.season)

    @property
    def parts(self) -> Split:
        """The split into train / validation / test (a series prepared for `forecast` has none)."""
        if self.split is None:
            raise ValueError("expected a split series, got one prepared for forecasting only")
        return self.split

    def steps(self, part: str) -> int:
        """Targets per window: the horizon on the test part, the network's O on train and val."""
        return self.horizon if part == "test" else self.outputs

    def raw(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        """Raw inputs (K, W) and targets (K, steps(part)) of one part, in original units."""
        return windows(self.series.values, self.origins[part], self.window, self.steps(part))

    def inputs(
        self, values: np.ndarray, at: np.ndarray, since: np.ndarray | None = None
    ) -> np.ndarray:
        """The network's inputs for origins `at` (K,) of `values`: the scaled window, then the
        covariates of its W steps (features.py; observed up to `since` (K,), default `at`), then
        (with a base) the base's O forecasts scaled like the window: (K, W [+ W·F] [+ O])."""
        x = windows(values, at, self.window, 0)[0]  # (K, W)
        parts = [self.scaler.transform(x)]  # (K, W)
        if self.covariates is not None:
            rows = self.covariates.rows(at, at if since is None else since, self.window)
            parts.append(rows.reshape(len(at), -1))  # (K, W·F), step by step
        if self.base != "none":
            shift, scale = self.scaler.reference(x)  # (K, 1) each
            base = self.statistical.base(self.base, values, at, self.outputs)  # (K, O)
            parts.append((base - shift) / scale)
        return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]

    def tensors(
        self, part: str, dtype=torch.float32, rows: np.ndarray | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Network inputs (K, W [+ O]) and scaled targets (K, O) of the train or val part; `rows`:
        only those of its windows (K = len(rows); pool.py's lazy batches)."""
        at = self.origins[part] if rows is None else self.origins[part][rows]
        x, y = windows(self.series.values, at, self.window, self.steps(part))
        ys = self.scaler.transform(x, y)[1]
        xs = self.inputs(self.series.values, at)
        return torch.as_tensor(xs, dtype=dtype), torch.as_tensor(ys, dtype=dtype)


def load_series(
    s: TrainSettings, data: str | None = None, column_hint: str | None = None
) -> Series:
    return read_series(data or s.data, s.target, s.time, s.fill, column_hint)


def covariates_of(
    m: ModelConfig, series: Series, n_train: int, scaler: CovariateScaler | None = None
) -> tuple[Covariates | None, CovariateScaler | None]:
    """The series' covariates scaled (the scaler fitted on its first n_train rows unless given)."""
    if not m.features:
        return None, None
    raw = series.covariates if series.covariates is not None else np.zeros((len(series), 0))
    if scaler is None and raw.shape[1]:
        scaler = CovariateScaler.fit(raw[:n_train])
    z = scaler.transform(raw) if scaler is not None else raw  # (N, Cp + Cf)
    Cp = len(m.past_covariates)
    future = np.concatenate([z[:, Cp:], calendar(series.time, m.calendar, series.time_column)], 1)
    return Covariates(z[:, :Cp], future), scaler


def prepare(
    s: TrainSettings,
    series: Series,
    scaler: Scaler | None = None,
    covariate_scaler: CovariateScaler | None = None,
) -> Prepared:
    """Split (before windowing), fit the scalers on the train part unless given, window.

    The season: `s.season`, or when None the one the time column's frequency suggests if it is
    shorter than the training part (else 0)."""
    split = make_split(len(series), s.window, s.horizon, s.val_fraction, s.test_fraction)
    if scaler is None:
        scaler = Scaler.fit(s.scaling, series.values[: split.n_train])
    covariates, covariate_scaler = covariates_of(s, series, split.n_train, covariate_scaler)
    model = s.model
    origins = split_origins(split, s.window, model.outputs)  # a recursive network learns one step
    origins["test"] = split_origins(split, s.window, s.horizon)["test"]  # scored at the horizon
    season = s.season
    if season is None:
        season = series.season if series.season < split.n_train else 0
    return Prepared(series, split, scaler, origins, s.window, s.horizon, s.base, season,
                    model.outputs, covariates, covariate_scaler)  # fmt: skip
