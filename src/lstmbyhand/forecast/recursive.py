"""Forecasts past the end of the data, recursively when asked for more steps than the horizon.

    x = the last W values (and the base after them);  repeat: ŷ = model(x);  append ŷ;
    x = the last W of (x, ŷ) (the base: its models' forecasts after the history and ŷ)

until `steps` values exist (the last round's extra values are dropped; `evaluate.predict` does
it). Forecasts are in the original units; time stamps continue the time column (see
`data.continue_time`). With quantiles the median is fed back in and every quantile is a column
(`<target>_q0.1`, ...). A model with known-future covariates needs them for every step asked
(`future`: by series id, as `panel.read_future` reads them); calendar features come from the
continued time stamps.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from lstmbyhand.errors import UserError
from lstmbyhand.forecast.data import continue_time
from lstmbyhand.forecast.evaluate import predict
from lstmbyhand.forecast.features import calendar
from lstmbyhand.forecast.model import Forecaster
from lstmbyhand.forecast.prepare import Prepared

Future = dict[str, tuple[object, np.ndarray]]  # series id -> (time stamps or None, (S, Cf) raw)


def recursive_forecast(model: Forecaster, prep: Prepared, steps: int) -> np.ndarray:
    """The next `steps` values after the series: (steps,)."""
    values = prep.series.values
    return predict(model, prep, values, np.array([len(values) - 1]), steps)[0]


def forecast_frame(
    model: Forecaster, prep: Prepared, steps: int, future: Future | None = None
) -> pd.DataFrame:
    """A table of (time, forecast [, quantiles]): the time column's name (or "step") and the
    target's name."""
    series = prep.series
    stamps = continue_time(series, steps)
    prep = with_future(model, prep, steps, stamps, future)
    values = series.values
    at = np.array([len(values) - 1])
    time_name = series.time_column or "step"
    frame = pd.DataFrame({time_name: stamps})
    levels = getattr(getattr(model, "config", None), "quantiles", [])
    if not levels:
        frame[series.target] = recursive_forecast(model, prep, steps)
        return frame
    q = predict(model, prep, values, at, steps, quantiles=True)[0]  # (S, Q)
    frame[series.target] = q[:, levels.index(0.5)]
    for k, level in enumerate(levels):
        if level != 0.5:
            frame[f"{series.target}_q{level:g}"] = q[:, k]
    return frame


def pool_frame(
    model: Forecaster, members: list[Prepared], steps: int, id_name: str, future: Future | None
) -> pd.DataFrame:
    """Every series' `forecast_frame`, one below the other, the id in the first column; series of
    different target columns (wide data) share the column name "value"."""
    frames = []
    common = len({m.series.target for m in members}) > 1
    for prep in members:
        frame = forecast_frame(model, prep, steps, future)
        if common:
            target = prep.series.target
            frame.columns = [
                frame.columns[0],
                *("value" + c[len(target) :] for c in frame.columns[1:]),
            ]
        frame.insert(0, id_name, prep.series.id)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def with_future(
    model: Forecaster, prep: Prepared, steps: int, stamps: object, future: Future | None
) -> Prepared:
    """`prep` with the known-future inputs of the `steps` steps after its end appended: the
    future covariates (scaled with the run's scaler) and calendar features of `stamps`."""
    config = getattr(model, "config", None)
    if prep.covariates is None or config is None or not prep.covariates.future.shape[1]:
        return prep
    series, columns = prep.series, config.future_covariates
    rows = [calendar(stamps, config.calendar, series.time_column)]  # (S, 2K)
    if columns:
        rows.insert(0, future_rows(prep, steps, stamps, future, columns))
    return replace(prep, covariates=prep.covariates.extended(np.concatenate(rows, axis=1)))


def future_rows(
    prep: Prepared, steps: int, stamps: object, future: Future | None, columns: list[str]
) -> np.ndarray:
    """The scaled future covariates (S, Cf) of the steps after the series, or a `UserError`
    saying which are missing."""
    series = prep.series
    which = f" of series {series.id!r}" if series.id else ""
    given = (future or {}).get(series.id)
    have = 0 if given is None else len(given[1])
    if given is not None and given[0] is not None:
        times, raw = given
        after = np.asarray(pd.Index(times)) > np.asarray(series.time)[-1]
        times, raw = pd.Index(times)[after], raw[after]
        have = len(raw)
        if have >= steps and not pd.Index(times[:steps]).equals(pd.Index(stamps)):
            raise UserError(
                f"the future covariates{which} are not for the {steps} steps after the data "
                f"(expected {pd.Index(stamps)[0]} .. {pd.Index(stamps)[-1]} in order); fix "
                "the --future file's time column"
            )
        given = (times, raw)
    if given is None or have < steps:
        raise UserError(
            f"forecast --steps {steps} needs the future covariates {', '.join(map(repr, columns))}"
            f" for {steps} steps after the end of the data{which}; "
            + ("no --future file was given" if future is None else f"the --future file has {have}")
            + ": pass --future FILE with them, or fewer --steps"
        )
    scaler = prep.covariate_scaler
    assert scaler is not None  # a run with future covariates has their scaler
    Cp = prep.covariates.past.shape[1] if prep.covariates is not None else 0
    center, scale = np.asarray(scaler.center[Cp:]), np.asarray(scaler.scale[Cp:])
    return (given[1][:steps] - center) / scale
