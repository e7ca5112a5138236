"""The statistical baselines and the model's base, against statsforecast called directly.

statsforecast's own `cross_validation(h, step_size=1, refit=False)` fits each model once, on the
data before its first window, and forecasts every later window with those parameters: the
numbers `evaluate` must report for the test split, from a code path we did not write.
"""

from __future__ import annotations

from dataclasses import replace
from importlib.resources import files

import numpy as np
import pandas as pd
import pytest
from statsforecast import StatsForecast
from statsforecast.models import AutoARIMA, AutoETS, AutoTheta

from lstmbyhand.forecast.baselines import Statistical, adopt, combine, stored
from lstmbyhand.forecast.config import TrainSettings
from lstmbyhand.forecast.evaluate import evaluate, predict
from lstmbyhand.forecast.model import Forecaster
from lstmbyhand.forecast.prepare import load_series, prepare

pytestmark = pytest.mark.usefixtures("one_thread")
AIRLINE = str(files("lstmbyhand") / "datasets" / "airline.csv")


def statsforecast_test_forecasts(values: np.ndarray, horizon: int, windows: int, season: int):
    """statsforecast's cross-validated forecasts: {model: (K, H)} and the targets (K, H)."""
    df = pd.DataFrame({"unique_id": "s", "ds": np.arange(len(values)), "y": values})
    models = [AutoETS(season_length=season), AutoARIMA(season_length=season),
              AutoTheta(season_length=season)]  # fmt: skip
    cv = StatsForecast(models=models, freq=1).cross_validation(
        h=horizon, df=df, n_windows=windows, step_size=1, refit=False
    )
    cv = cv.sort_values(["cutoff", "ds"])
    shape = (windows, horizon)
    out = {m.alias: cv[m.alias].to_numpy().reshape(shape) for m in models}
    return out, cv["y"].to_numpy().reshape(shape)


@pytest.fixture(scope="module")
def airline_h3():
    s = TrainSettings(AIRLINE, "passengers", horizon=3, season=12, multistep="direct")
    prep = prepare(s, load_series(s))
    sf, y = statsforecast_test_forecasts(prep.series.values, 3, len(prep.origins["test"]), 12)
    return s, prep, sf, y


def test_evaluate_scores_statsforecast_forecasts_on_the_model_test_points(airline_h3):
    s, prep, sf, y = airline_h3
    np.testing.assert_array_equal(y, prep.raw("test")[1])  # the same points, the same horizon
    model = Forecaster(s.model).eval()
    result = evaluate(model, prep, 12)
    for name, f in sf.items():
        assert result["metrics"][name]["mae"] == pytest.approx(np.abs(y - f).mean(), rel=1e-9)
        rmse = np.sqrt(np.mean((y - f) ** 2))
        assert result["metrics"][name]["rmse"] == pytest.approx(rmse, rel=1e-9)
    table = result["metrics"]
    assert result["best"] == min(table, key=lambda n: table[n]["mae"])
    skipped = evaluate(model, prep, 12, baselines=False)["metrics"]
    assert set(skipped) == {"model", "naive", "seasonal_naive"}


def test_untrained_direct_model_is_the_median_of_the_statistical_forecasts(airline_h3):
    """The head starts at zero: y' = b', so the forecast is the base, up to float32 scaling."""
    s, prep, sf, y = airline_h3
    assert s.base == "median"  # the default
    model = Forecaster(s.model).eval()
    got = predict(model, prep, prep.series.values, prep.origins["test"])  # (K, 3)
    want = np.median(np.stack(list(sf.values())), axis=0)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_untrained_recursive_model_feeds_the_median_back_in(airline_h3):
    """Recursive (the default): each step is the median of the three one-step forecasts after
    the history and the steps before it, with the parameters fitted before the test split."""
    s, prep, sf, y = airline_h3
    s = replace(s, multistep="recursive")
    prep = prepare(s, prep.series)
    values, at = prep.series.values, prep.origins["test"][:4]
    fitted = [m(season_length=12).fit(values[: prep.split.test_start])
              for m in (AutoETS, AutoARIMA, AutoTheta)]  # fmt: skip
    want = []
    for t in at:
        history = list(values[: t + 1])
        for _ in range(3):
            history.append(np.median([m.forward(np.array(history), 1)["mean"][0] for m in fitted]))
        want.append(history[t + 1 :])
    got = predict(Forecaster(s.model).eval(), prep, values, at)  # (4, 3)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_a_single_model_base_is_that_model(airline_h3):
    s, prep, sf, y = airline_h3
    at = prep.origins["test"]
    base = prep.statistical.base("AutoTheta", prep.series.values, at, 3)
    np.testing.assert_allclose(base, sf["AutoTheta"], rtol=1e-9)


@pytest.fixture(scope="module")
def airline_fit():
    """The airline series and the three models fitted on its first 100 values."""
    values = np.loadtxt(AIRLINE, delimiter=",", skiprows=1, usecols=1)
    return values, Statistical(values[:100], 12)


def test_a_forecast_from_t_uses_nothing_after_t(airline_fit):
    values, stat = airline_fit
    changed = values.copy()
    changed[90:] *= 3  # everything after origin 89 differs
    for name in ("AutoETS", "AutoARIMA", "AutoTheta"):
        a = stat.at(values, np.array([89]), 4, (name,))[name]
        b = stat.at(changed, np.array([89]), 4, (name,))[name]
        np.testing.assert_array_equal(a, b)


def test_combine_leaves_out_models_without_a_forecast():
    nan = np.nan
    forecasts = {
        "AutoETS": np.array([[1.0, 2.0], [nan, nan], [nan, nan]]),
        "AutoARIMA": np.array([[3.0, 8.0], [5.0, 6.0], [nan, nan]]),
        "AutoTheta": np.array([[2.0, 4.0], [7.0, 2.0], [nan, nan]]),
    }
    last = np.array([10.0, 20.0, 30.0])
    median = combine(forecasts, "median", last)
    np.testing.assert_array_equal(median, [[2, 4], [6, 4], [30, 30]])  # by hand
    mean = combine(forecasts, "mean", last)
    np.testing.assert_array_equal(mean, [[2, 14 / 3], [6, 4], [30, 30]])


def test_too_short_a_history_gives_no_forecast(airline_fit):
    values, stat = airline_fit
    assert stat.forecast("AutoARIMA", values[:5], 1) is None  # a seasonal ARIMA needs > 12
    assert stat.forecast("AutoARIMA", values[:40], 1).shape == (1,)


# --- what a run stores: the same numbers without a fit ---------------------------------------


def test_evaluate_with_stored_forecasts_equals_evaluate_refitting(airline_h3):
    """The forecasts `train` stores (`stored`) given to freshly prepared data (`adopt`): evaluate
    gives the very numbers of evaluate with the models fitted, and fits nothing."""
    s, prep, sf, y = airline_h3
    model = Forecaster(s.model).eval()
    refitting = evaluate(model, prep, 12)  # the fixture's models: fitted on train + validation
    fresh = prepare(s, prep.series)
    adopt(stored([prep]), [fresh])
    assert evaluate(model, fresh, 12) == refitting
    assert fresh.statistical.fitted == {}  # no model fitted: statsforecast not even needed
    for name, f in sf.items():  # and statsforecast's own numbers
        assert refitting["metrics"][name]["mae"] == pytest.approx(np.abs(y - f).mean(), rel=1e-9)


def test_histories_not_stored_are_forecast_by_the_fitted_model(airline_h3):
    """Recursive at horizon 3: from the second step on, the histories hold the network's own
    forecasts, which no run stored; those are made by the model, fitted then, and agree. (On
    AutoTheta alone: the fastest fit.)"""
    s, prep, sf, y = airline_h3
    s = replace(s, multistep="recursive", base="AutoTheta")
    first = prepare(s, prep.series)
    saved = stored([first])  # the baselines' forecasts from the test origins: real histories
    model = Forecaster(s.model).eval()
    want = predict(model, first, first.series.values, first.origins["test"])  # (K, 3)
    fresh = prepare(s, prep.series)
    adopt(saved, [fresh])
    got = predict(model, fresh, fresh.series.values, fresh.origins["test"])
    np.testing.assert_array_equal(got, want)
    assert set(fresh.statistical.fitted) == {"AutoTheta"}


def test_stored_forecasts_belong_to_one_fit(airline_fit):
    """Forecasts from another fit (other values, another season) are never taken."""
    values, stat = airline_fit
    stat.at(values, np.array([99, 100]), 2, ("AutoTheta",))
    saved = stored([_member(stat, values)])
    for other in (Statistical(values[:100], 4), Statistical(values[1:101], 12)):
        adopt(saved, [_member(other, values)])
        assert other.known == {}
    same = Statistical(values[:100], 12)
    adopt(saved, [_member(same, values)])
    np.testing.assert_array_equal(
        same.at(values, np.array([99, 100]), 2, ("AutoTheta",))["AutoTheta"],
        stat.at(values, np.array([99, 100]), 2, ("AutoTheta",))["AutoTheta"],
    )
    assert same.fitted == {}


def _member(stat: Statistical, values: np.ndarray):
    """The parts of a prepared series that `stored` and `adopt` read (no test part)."""
    return type("Member", (), {"statistical": stat, "origins": {}, "horizon": 1,
                               "series": type("S", (), {"values": values})})()  # fmt: skip
