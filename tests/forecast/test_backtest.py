"""Rolling-origin folds: sizes by hand, test parts that tile the end, pooled = all points together."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lstmbyhand.errors import UserError
from lstmbyhand.forecast.backtest import backtest, fold_settings
from lstmbyhand.forecast.config import TrainSettings
from lstmbyhand.forecast.windows import make_split

pytestmark = pytest.mark.usefixtures("one_thread")


def test_fold_sizes_by_hand():
    s = TrainSettings("x.csv", "y")  # 70 / 15 / 15
    plan = fold_settings(s, 100, 3)  # n_val = n_test = 15
    assert [n for n, _ in plan] == [70, 85, 100]
    for n, fs in plan:
        split = make_split(n, fs.window, fs.horizon, fs.val_fraction, fs.test_fraction)
        assert (split.n_val, split.n_test) == (15, 15)
        assert split.n_train == n - 30
    with pytest.raises(UserError, match="--folds 6"):
        fold_settings(s, 100, 6)  # fold 1 would have 25 values: 15 + 15 leave nothing to train
    with pytest.raises(UserError, match="--folds must be"):
        fold_settings(s, 100, 0)


def test_backtest_folds_tile_the_end_and_pool_their_points(tmp_path):
    t = np.arange(80.0)
    values = 50 + 0.5 * t + 10 * np.sin(2 * np.pi * t / 7)
    data = tmp_path / "s.csv"
    pd.DataFrame({"step": np.arange(80), "y": values}).to_csv(data, index=False)
    s = TrainSettings(str(data), "y", window=6, hidden=2, epochs=1, base="none", season=7)
    result = backtest(s, 2, tmp_path / "bt", baselines=False)
    first, second = result["folds"]
    assert first["test"] == [56, 67] and second["test"] == [68, 79]  # n_test = 12 each, no gap
    for name, pooled in result["pooled"].items():
        maes = [f["metrics"][name]["mae"] for f in (first, second)]
        points = [f["points"] for f in (first, second)]
        assert pooled["mae"] == pytest.approx(np.average(maes, weights=points))
    assert (tmp_path / "bt" / "fold-1" / "weights.safetensors").is_file()
    assert len(pd.read_csv(tmp_path / "bt" / "fold-1.csv")) == 68
