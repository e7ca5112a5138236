"""The point of the forecaster: it beats "next = last" on the bundled real series, with defaults."""

from __future__ import annotations

from importlib.resources import files

import pytest

from lstmbyhand.forecast.config import TrainSettings
from lstmbyhand.forecast.evaluate import evaluate
from lstmbyhand.forecast.restore import open_run
from lstmbyhand.forecast.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    "file, target, rows",
    [
        ("airline.csv", "passengers", None),  # strong trend: the test part leaves the train range
        ("nile.csv", "flow", None),  # noisy, with a level shift
        ("nile.csv", "flow", 60),  # noisy and short: 1871-1930 only
        ("lynx.csv", "trappings", None),  # noisy ~10-year cycles
    ],
)
def test_default_model_beats_the_naive_forecast(tmp_path, file, target, rows):
    path = str(files("lstmbyhand") / "datasets" / file)
    if rows:
        lines = open(path).read().splitlines()[: rows + 1]
        path = str(tmp_path / file)
        open(path, "w").write("\n".join(lines) + "\n")
    train(TrainSettings(path, target), tmp_path / "run", quiet=True)  # all defaults, seed 0
    model, settings, config, prep = open_run(tmp_path / "run")
    m = evaluate(model, prep, config.season)["metrics"]
    assert m["model"]["mae"] < m["naive"]["mae"], m
