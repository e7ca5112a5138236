"""The point of the forecaster, checked fast: with the defaults it beats statsforecast on airline.

One series, one seed, horizon 1: the trained model's test MAE below the best of AutoETS, AutoARIMA
and AutoTheta, all scored by `evaluate` on the same points. The full measurement (every bundled
series, horizons 1 and 12, seeds 0-2) is benchmarks/forecast_quality.py, recorded in
docs/forecasting.md; that the untrained model is exactly its statistical base is tested in
test_baselines.py.
"""

from __future__ import annotations

from importlib.resources import files

import pytest

from lstmbyhand.forecast.config import STATISTICAL, TrainSettings
from lstmbyhand.forecast.evaluate import evaluate
from lstmbyhand.forecast.restore import open_run
from lstmbyhand.forecast.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


def test_default_model_beats_the_best_statistical_model_on_airline(tmp_path):
    path = str(files("lstmbyhand") / "datasets" / "airline.csv")
    train(TrainSettings(path, "passengers"), tmp_path / "run", quiet=True)  # defaults, seed 0
    model, _, config, prep = open_run(tmp_path / "run")
    m = evaluate(model, prep, config.season)["metrics"]
    best = min(m[name]["mae"] for name in STATISTICAL)
    assert m["model"]["mae"] < best, m
