"""Metrics and baselines against hand-computed numbers on tiny arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lstmbyhand.forecast.evaluate import mase_scale, metrics, naive, seasonal_naive


def test_metrics_by_hand():
    y = np.array([[1.0, 2.0], [4.0, 0.0]])
    f = np.array([[2.0, 2.0], [1.0, 0.0]])
    m = metrics(y, f, scale=2.0)
    assert m["mae"] == pytest.approx((1 + 0 + 3 + 0) / 4)
    assert m["rmse"] == pytest.approx(math.sqrt((1 + 0 + 9 + 0) / 4))
    # sMAPE: 200|e|/(|y|+|f|) per pair; the 0/0 pair counts as 0
    assert m["smape"] == pytest.approx((200 * 1 / 3 + 0 + 200 * 3 / 5 + 0) / 4)
    assert m["mase"] == pytest.approx(1.0 / 2.0)
    assert metrics(y, f, scale=0.0)["mase"] is None


def test_mase_scale_is_the_in_sample_naive_error():
    train = np.array([1.0, 3.0, 2.0, 6.0, 5.0])
    assert mase_scale(train, 0) == pytest.approx(np.mean([2, 1, 4, 1]))
    assert mase_scale(train, 2) == pytest.approx(np.mean([1, 3, 3]))
    assert mase_scale(train, 99) == pytest.approx(np.mean([2, 1, 4, 1]))  # season too long: m = 1


def test_naive_repeats_the_last_value():
    v = np.arange(10.0) ** 2
    np.testing.assert_array_equal(naive(v, np.array([3, 5]), 3), [[9, 9, 9], [25, 25, 25]])


def test_seasonal_naive_takes_the_same_season_last_year():
    v = np.arange(100.0)
    at = np.array([30])  # last observed: index 30; targets 31..35; season 4
    got = seasonal_naive(v, at, 5, 4)
    # h=1..4 -> t+h-4 = 27, 28, 29, 30; h=5 -> t+5-8 = 27
    np.testing.assert_array_equal(got, [[27, 28, 29, 30, 27]])
    for h in range(1, 6):  # every source index is observed (≤ t) and in the same season as t+h
        src = got[0, h - 1]
        assert src <= 30 and (30 + h - src) % 4 == 0
