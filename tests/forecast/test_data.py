"""Reading and validating CSVs, the chronological split, windows (no leakage), scalers."""

from __future__ import annotations

from importlib.resources import files

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lstmbyhand.errors import UserError
from lstmbyhand.forecast.data import continue_time, read_series
from lstmbyhand.forecast.scaling import SCALINGS, Scaler
from lstmbyhand.forecast.windows import (
    make_split,
    minimum_length,
    split_origins,
    split_sizes,
    windows,
)

DATASETS = files("lstmbyhand") / "datasets"


def write(tmp_path, text: str, name: str = "d.csv") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


# --- the bundled data -----------------------------------------------------------------------


def test_airline_matches_pandas_and_known_totals():
    path = str(DATASETS / "airline.csv")
    s = read_series(path, "passengers")
    ref = pd.read_csv(path)
    np.testing.assert_array_equal(s.values, ref["passengers"].to_numpy(dtype=float))
    assert len(s) == 144 and s.values.sum() == 40363  # Box & Jenkins series G
    assert s.time_column == "month" and s.freq == "MS" and s.season == 12
    assert s.time[0] == pd.Timestamp("1949-01-01") and s.time[-1] == pd.Timestamp("1960-12-01")


def test_nile_and_lynx_known_means():
    nile = read_series(str(DATASETS / "nile.csv"), "flow")
    lynx = read_series(str(DATASETS / "lynx.csv"), "trappings")
    assert len(nile) == 100 and nile.values.mean() == pytest.approx(919.35)
    assert len(lynx) == 114 and lynx.values.mean() == pytest.approx(1538.0175, abs=1e-4)
    assert nile.freq == 1.0 and nile.season == 0
    np.testing.assert_array_equal(continue_time(nile, 3), [1971, 1972, 1973])


def test_continue_time_uses_pandas_frequency(tmp_path):
    path = write(tmp_path, "day,v\n2024-02-27,1\n2024-02-28,2\n2024-02-29,3\n2024-03-01,4\n")
    s = read_series(path, "v", time="day")
    assert s.freq == "D"
    expect = pd.date_range("2024-03-02", periods=4, freq="D")
    assert list(continue_time(s, 4)) == list(expect)
    assert list(continue_time(read_series(path, "v", time=None), 1)) == [pd.Timestamp("2024-03-02")]


def test_no_time_column_counts_steps(tmp_path):
    path = write(tmp_path, "v\n1\n2\n3\n")
    s = read_series(path, "v")
    assert s.time is None
    np.testing.assert_array_equal(continue_time(s, 2), [3, 4])


# --- filling gaps: compared with pandas' own methods -----------------------------------------


@pytest.mark.parametrize("fill", ["interpolate", "ffill", "drop"])
def test_fill_methods_match_pandas(tmp_path, fill):
    path = write(tmp_path, "t,v\n1,\n2,2\n3,NA\n4,\n5,8\n6,9\n")
    s = read_series(path, "v", fill=fill)
    raw = pd.read_csv(path)["v"]
    expect = {
        "interpolate": raw.interpolate(limit_direction="both"),
        "ffill": raw.ffill().bfill(),
        "drop": raw.dropna(),
    }[fill].to_numpy()
    np.testing.assert_allclose(s.values, expect)
    if fill == "drop":
        np.testing.assert_array_equal(s.time, [2, 5, 6])


# --- the split and the windows --------------------------------------------------------------


def test_split_sizes_are_rounded_fractions():
    sp = split_sizes(144, 0.15, 0.15)
    assert (sp.n_val, sp.n_test) == (round(144 * 0.15), round(144 * 0.15))
    assert sp.n_train + sp.n_val + sp.n_test == 144


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(20, 200),
    window=st.integers(1, 12),
    horizon=st.integers(1, 4),
    vf=st.floats(0.05, 0.3),
    tf=st.floats(0.05, 0.3),
)
def test_windows_never_leak_across_the_split(n, window, horizon, vf, tf):
    try:
        sp = make_split(n, window, horizon, vf, tf)
    except UserError as err:
        assert n < minimum_length(window, horizon, vf, tf)
        assert str(minimum_length(window, horizon, vf, tf)) in str(err)
        return
    values = np.arange(n, dtype=float)  # each value is its own index
    o = split_origins(sp, window, horizon)
    bounds = {
        "train": (0, sp.n_train),
        "val": (sp.val_start, sp.test_start),
        "test": (sp.test_start, n),
    }
    for part, (lo, hi) in bounds.items():
        x, y = windows(values, o[part], window, horizon)
        assert len(x) > 0
        assert y.min() >= lo and y.max() < hi  # every target inside its own part
        assert (x.max(axis=1) < y.min(axis=1)).all()  # inputs strictly before targets
        if part == "train":
            assert x.min() >= 0 and x.max() < sp.n_train  # inputs from train only
        # every possible target position of the part is covered (the first step of some window)
        assert set(y[:, 0].astype(int)) == set(range(max(lo, window), hi - horizon + 1))


def test_windows_match_plain_slicing():
    values = np.random.default_rng(0).normal(size=30)
    at = np.array([4, 9, 20])
    x, y = windows(values, at, 5, 3)
    for k, t in enumerate(at):
        np.testing.assert_array_equal(x[k], values[t - 4 : t + 1])
        np.testing.assert_array_equal(y[k], values[t + 1 : t + 4])


def test_too_short_series_names_the_minimum():
    need = minimum_length(12, 2, 0.15, 0.15)
    make_split(need, 12, 2, 0.15, 0.15)
    with pytest.raises(UserError, match=f"at least {need}"):
        make_split(need - 1, 12, 2, 0.15, 0.15)


def test_windows_reject_out_of_range_origins():
    with pytest.raises(ValueError, match="expected origins"):
        windows(np.zeros(10), np.array([0]), 3, 1)


# --- scaling ----------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(SCALINGS),
    train=arrays(np.float64, st.integers(3, 40), elements=st.floats(-1e3, 1e3)),
    x=arrays(np.float64, (4, 6), elements=st.floats(-1e3, 1e3)),
    y=arrays(np.float64, (4, 2), elements=st.floats(-1e3, 1e3)),
)
def test_inverse_undoes_transform(kind, train, x, y):
    sc = Scaler.fit(kind, train)
    xs, ys = sc.transform(x, y)
    np.testing.assert_allclose(sc.inverse(ys, x), y, rtol=1e-9, atol=1e-6)
    assert np.isfinite(xs).all()


def test_scaler_is_fitted_on_the_train_part_only():
    values = np.array([1.0, 2.0, 4.0, 7.0, 100.0, 1000.0])
    g = Scaler.fit("global", values[:4])
    assert g.center == pytest.approx(np.mean(values[:4])) and g.scale == pytest.approx(
        np.std(values[:4])
    )
    d = Scaler.fit("last", values[:4])
    assert d.scale == pytest.approx(np.std(np.diff(values[:4])))


def test_last_scaling_zero_output_is_the_naive_forecast():
    x = np.array([[3.0, 5.0, 8.0], [1.0, 1.0, 2.0]])
    sc = Scaler.fit("last", np.array([0.0, 1.0, 3.0, 4.0]))
    np.testing.assert_array_equal(sc.inverse(np.zeros((2, 2)), x), [[8.0, 8.0], [2.0, 2.0]])


def test_window_scaling_uses_each_window():
    x = np.array([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]])
    train = np.array([0.0, 0.1, 0.0, 0.1])
    sc = Scaler.fit("window", train)
    assert sc.scale == pytest.approx(np.std(np.diff(train)))  # σ_Δ: the floor of s_x
    xs = sc.transform(x)
    np.testing.assert_allclose(xs[0], xs[1])  # the same shape at another level and scale
    np.testing.assert_allclose(xs.mean(axis=1), 0, atol=1e-12)
    flat = sc.transform(np.array([[5.0, 5.0, 5.001]]))  # nearly flat: divided by the floor
    expect = (np.array([[5.0, 5.0, 5.001]]) - 5.000333333333) / sc.scale
    np.testing.assert_allclose(flat, expect, atol=1e-9)


def test_constant_series_does_not_divide_by_zero():
    sc = Scaler.fit("global", np.full(10, 5.0))
    assert sc.scale == 5.0  # no spread: falls back to the mean size of the values
    assert Scaler.fit("last", np.arange(10.0)).scale == pytest.approx(np.std(np.arange(10.0)))
    assert Scaler.fit("last", np.zeros(4)).scale == 1.0
    assert np.isfinite(Scaler.fit("window", np.ones(3)).transform(np.ones((1, 3)))).all()


def test_unknown_scaling_is_a_value_error():
    with pytest.raises(ValueError, match="expected scaling in"):
        Scaler.fit("minmax", np.arange(4.0))
