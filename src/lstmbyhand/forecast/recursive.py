"""Forecasts past the end of the data, recursively when asked for more steps than the horizon.

    x = the last W values (and the base after them);  repeat: ŷ = model(x);  append ŷ;
    x = the last W of (x, ŷ) (the base: its models' forecasts after the history and ŷ)

until `steps` values exist (the last round's extra values are dropped; `evaluate.predict` does
it). Forecasts are in the original units; time stamps continue the time column (see
`data.continue_time`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lstmbyhand.forecast.data import continue_time
from lstmbyhand.forecast.evaluate import predict
from lstmbyhand.forecast.model import Forecaster
from lstmbyhand.forecast.prepare import Prepared


def recursive_forecast(model: Forecaster, prep: Prepared, steps: int) -> np.ndarray:
    """The next `steps` values after the series: (steps,)."""
    values = prep.series.values
    return predict(model, prep, values, np.array([len(values) - 1]), steps)[0]


def forecast_frame(model: Forecaster, prep: Prepared, steps: int) -> pd.DataFrame:
    """A table of (time, forecast): the time column's name (or "step") and the target's name."""
    series = prep.series
    values = recursive_forecast(model, prep, steps)
    stamps = continue_time(series, steps)
    time_name = series.time_column or "step"
    return pd.DataFrame({time_name: stamps, series.target: values})
