"""Recursive forecasting, checked with a model whose output we know."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from lstmbyhand.forecast.data import Series
from lstmbyhand.forecast.prepare import Prepared
from lstmbyhand.forecast.recursive import forecast_frame, recursive_forecast
from lstmbyhand.forecast.scaling import Scaler


class Ones(torch.nn.Module):
    """Outputs 1 for every step: under `last` scaling, 'last value + one train step spread'."""

    def __init__(self, horizon: int) -> None:
        super().__init__()
        self.horizon = horizon

    def forward(self, x):
        return torch.ones(x.shape[0], self.horizon)


def prepared(values, horizon, time=None, freq=None) -> Prepared:
    s = Series(
        np.asarray(values, float), time, freq, "x.csv", "y", "t" if time is not None else None
    )
    return Prepared(s, None, Scaler("last", 0.0, 2.0), {}, 3, horizon)


def test_recursion_feeds_forecasts_back_in():
    prep = prepared([1.0, 5.0, 10.0], horizon=2)
    # round 1 from last=10: [12, 12]; round 2 from last=12: [14, 14]; round 3: [16, (16)]
    np.testing.assert_allclose(recursive_forecast(Ones(2), prep, 5), [12, 12, 14, 14, 16])


def test_frame_continues_dates_with_the_inferred_frequency():
    t = pd.date_range("2020-01-31", periods=3, freq="ME")
    frame = forecast_frame(Ones(1), prepared([1, 2, 3], 1, t, "ME"), 3)
    assert list(frame.columns) == ["t", "y"]
    assert list(frame["t"]) == list(pd.date_range("2020-04-30", periods=3, freq="ME"))
    np.testing.assert_allclose(frame["y"], [5, 7, 9])
