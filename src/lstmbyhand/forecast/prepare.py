"""Settings + a series -> split, scaler and the windows of each part, ready for the network.

The same function serves training and every later command: `train` fits the scaler on the train
part; `evaluate`, `forecast` and `inspect` pass the scaler saved in config.json instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lstmbyhand.forecast.config import TrainSettings
from lstmbyhand.forecast.data import Series, read_series
from lstmbyhand.forecast.scaling import Scaler
from lstmbyhand.forecast.windows import Split, make_split, split_origins, windows


@dataclass
class Prepared:
    """A split series, its scaler and the origins of the train / val / test windows."""

    series: Series
    split: Split
    scaler: Scaler
    origins: dict[str, np.ndarray]  # part -> (K,)
    window: int
    horizon: int

    def raw(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        """Raw inputs (K, W) and targets (K, H) of one part, in original units."""
        return windows(self.series.values, self.origins[part], self.window, self.horizon)

    def tensors(self, part: str, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled inputs (K, W) and targets (K, H) of one part, as tensors."""
        x, y = self.raw(part)
        xs, ys = self.scaler.transform(x, y)
        return torch.as_tensor(xs, dtype=dtype), torch.as_tensor(ys, dtype=dtype)


def load_series(
    s: TrainSettings, data: str | None = None, column_hint: str | None = None
) -> Series:
    return read_series(data or s.data, s.target, s.time, s.fill, column_hint)


def prepare(s: TrainSettings, series: Series, scaler: Scaler | None = None) -> Prepared:
    """Split (before windowing), fit the scaler on the train part unless one is given, window."""
    split = make_split(len(series), s.window, s.horizon, s.val_fraction, s.test_fraction)
    if scaler is None:
        scaler = Scaler.fit(s.scaling, series.values[: split.n_train])
    origins = split_origins(split, s.window, s.horizon)
    return Prepared(series, split, scaler, origins, s.window, s.horizon)
