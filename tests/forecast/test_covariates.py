"""Covariates: scaled on the train part only, calendar features by hand, the step rows, refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lstmbyhand.errors import UserError
from lstmbyhand.forecast.config import TrainSettings
from lstmbyhand.forecast.features import Covariates, calendar
from lstmbyhand.forecast.pool import load_panel, prepare_pool


def covariate_csv(tmp_path, n=30) -> str:
    t = pd.date_range("2022-01-01", periods=n, freq="D")
    frame = pd.DataFrame({"day": t.strftime("%Y-%m-%d"), "y": np.arange(n, dtype=float) ** 1.5,
                          "price": np.arange(n) * 2.0, "promo": np.arange(n) % 3})  # fmt: skip
    frame.to_csv(tmp_path / "c.csv", index=False)
    return str(tmp_path / "c.csv")


def test_covariates_are_scaled_on_the_train_part_only(tmp_path):
    s = TrainSettings(covariate_csv(tmp_path), "y", window=4, base="none",
                      past_covariates=["price"], future_covariates=["promo"])  # fmt: skip
    member = prepare_pool(s, load_panel(s)).members[0]
    n_train = member.parts.n_train  # 30 - 4 - 4 = 22 (rounded fractions)
    price, promo = np.arange(30) * 2.0, np.arange(30) % 3
    scaler = member.covariate_scaler
    assert scaler.center == pytest.approx([price[:n_train].mean(), promo[:n_train].mean()])
    assert scaler.scale == pytest.approx([price[:n_train].std(), promo[:n_train].std()])
    np.testing.assert_allclose(member.covariates.past[:, 0],
                               (price - price[:n_train].mean()) / price[:n_train].std())  # fmt: skip


def test_calendar_features_by_hand():
    t = pd.DatetimeIndex(["2024-03-01", "2024-06-15"])
    got = calendar(t, ["month", "dayofweek"], "day")
    # March: 2π·3/12 = π/2; June: π. 2024-03-01 is a Friday (4), 2024-06-15 a Saturday (5).
    want = [[1, 0, np.sin(2 * np.pi * 4 / 7), np.cos(2 * np.pi * 4 / 7)],
            [0, -1, np.sin(2 * np.pi * 5 / 7), np.cos(2 * np.pi * 5 / 7)]]  # fmt: skip
    np.testing.assert_allclose(got, want, atol=1e-12)
    with pytest.raises(UserError, match="needs a time column of dates"):
        calendar(np.arange(2), ["month"], "year")


def test_step_rows_hold_past_covariates_and_shift_the_future_by_one():
    past = np.arange(10.0)[:, None]  # p_s = s
    future = 100 + np.arange(10.0)[:, None]  # f_s = 100 + s
    rows = Covariates(past, future).rows(np.array([5]), np.array([4]), 3)  # window 3 ends at 5
    # steps 3, 4, 5: past min(s, 4) = 3, 4, 4 (held after the origin 4); future of s+1: 104..106
    np.testing.assert_array_equal(rows[0], [[3, 104], [4, 105], [4, 106]])


def test_refusals_name_the_flag(tmp_path):
    with pytest.raises(UserError, match="--calendar: unknown feature 'week'"):
        TrainSettings("x.csv", "y", calendar=["week"]).check()
    with pytest.raises(UserError, match="'price' is given twice"):
        TrainSettings("x.csv", "y", past_covariates=["price"], future_covariates=["price"]).check()
    with pytest.raises(UserError, match="recursive only"):
        TrainSettings("x.csv", "y", horizon=3, multistep="direct", calendar=["month"]).check()
    s = TrainSettings(covariate_csv(tmp_path), "y", past_covariates=["cost"])
    with pytest.raises(UserError, match="no column 'cost'.*--past/--future-covariates"):
        load_panel(s)
