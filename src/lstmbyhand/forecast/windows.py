"""A chronological train / validation / test split, then sliding windows inside each part.

    series:  y_0 ... y_{n_train-1} | y_{n_train} ... | ... y_{N-1}
                     train         |   validation    |    test

A window ending at origin t holds the inputs y_{t-W+1..t} (W = window) and the targets
y_{t+1..t+H} (H = horizon): the target is the input shifted by the horizon. The split is made on the
series, before any window exists:

* a training window lies wholly inside the training part (inputs and targets);
* a validation or test window has every target inside its own part; its inputs are the W values
  just before, which may reach back into the earlier parts: the past a forecaster would have
  seen at that moment. No window ever sees a value after its targets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lstmbyhand.errors import UserError
from lstmbyhand.forecast.config import check_settings


@dataclass(frozen=True)
class Split:
    """Lengths of the three chronological parts: train, then validation, then test."""

    n_train: int
    n_val: int
    n_test: int

    @property
    def val_start(self) -> int:
        return self.n_train

    @property
    def test_start(self) -> int:
        return self.n_train + self.n_val

    @property
    def total(self) -> int:
        return self.n_train + self.n_val + self.n_test


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> Split:
    """Round each fraction of n; the rest is training data."""
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    return Split(n - n_val - n_test, n_val, n_test)


def fits(
    split: Split, window: int, horizon: int, val_fraction: float, test_fraction: float
) -> bool:
    """At least one training, one validation and one test window (none of a part of fraction 0)."""
    val = split.n_val >= horizon or (val_fraction == 0 and split.n_val == 0)
    test = split.n_test >= horizon or (test_fraction == 0 and split.n_test == 0)
    return split.n_train >= window + horizon and val and test


def minimum_length(window: int, horizon: int, val_fraction: float, test_fraction: float) -> int:
    """The shortest series that `fits` these settings (searched from a lower bound: each part's
    rounded share must hold its windows, so n·fraction ≥ horizon - 1/2, and the rest the train part's)."""
    rest = 1.0 - val_fraction - test_fraction  # the train part's share: n_train ≥ window + horizon
    bounds = [(horizon - 0.5) / f for f in (val_fraction, test_fraction) if f > 0]
    n = max(window + 3 * horizon, *(math.ceil(b) for b in (*bounds, (window + horizon - 1) / rest)))
    while not fits(split_sizes(n, val_fraction, test_fraction), window, horizon, val_fraction,
                   test_fraction):  # fmt: skip
        n += 1
    return n


def make_split(
    n: int, window: int, horizon: int, val_fraction: float, test_fraction: float
) -> Split:
    """Split a series of length n, or say how long it must be."""
    check_settings(window, horizon, val_fraction, test_fraction)
    split = split_sizes(n, val_fraction, test_fraction)
    if not fits(split, window, horizon, val_fraction, test_fraction):
        need = minimum_length(window, horizon, val_fraction, test_fraction)
        raise UserError(
            f"the series has {n} values, too short for window {window} + horizon {horizon} with "
            f"validation {val_fraction:g} and test {test_fraction:g}: it needs at least {need}; "
            "use more data, or train with a smaller --window or --horizon"
        )
    return split


def origins(start: int, stop: int, window: int, horizon: int) -> np.ndarray:
    """Every origin t whose targets t+1..t+H lie in [start, stop) and whose inputs start at ≥ 0."""
    first = max(start - 1, window - 1)
    last = stop - horizon - 1
    return np.arange(first, last + 1)


def windows(values: np.ndarray, at: np.ndarray, window: int, horizon: int):
    """Inputs (K, W) and targets (K, H) for the origins `at` (K,)."""
    values = np.asarray(values, dtype=np.float64)
    at = np.asarray(at, dtype=np.int64)
    if at.size and (at.min() < window - 1 or at.max() + horizon >= len(values)):
        raise ValueError(
            f"expected origins in [{window - 1}, {len(values) - horizon - 1}], "
            f"got [{at.min()}, {at.max()}]"
        )
    back = np.arange(-window + 1, 1)  # (W,)
    ahead = np.arange(1, horizon + 1)  # (H,)
    x = values[at[:, None] + back[None, :]]  # (K, W)
    y = values[at[:, None] + ahead[None, :]]  # (K, H)
    return x, y


def split_origins(split: Split, window: int, horizon: int) -> dict[str, np.ndarray]:
    """The origins of the train, val and test windows (see the module docstring)."""
    return {
        "train": origins(0, split.n_train, window, horizon),
        "val": origins(split.val_start, split.test_start, window, horizon),
        "test": origins(split.test_start, split.total, window, horizon),
    }
