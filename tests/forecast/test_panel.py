"""Many series in one file: long, wide, Nixtla's names, Parquet; split and scaling per series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lstmbyhand.errors import UserError
from lstmbyhand.forecast.config import TrainSettings
from lstmbyhand.forecast.panel import read_panel
from lstmbyhand.forecast.pool import load_panel, prepare_pool
from lstmbyhand.forecast.windows import split_origins

MACRO = str(Path(__file__).parents[2] / "src/lstmbyhand/datasets/macro.csv")


def long_frame(lengths=(40, 30, 7)) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    parts = []
    for k, n in enumerate(lengths):
        t = pd.date_range("2021-01-01", periods=n, freq="D")
        y = 10.0 * (k + 1) ** 2 + rng.normal(0, k + 1, n).cumsum()
        price = rng.normal(5, 1, n)
        parts.append(pd.DataFrame({"shop": f"s{k}", "day": t.strftime("%Y-%m-%d"), "sales": y,
                                   "price": price}))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def settings(path, **kw) -> TrainSettings:
    base = dict(target="sales", id="shop", window=5, base="none")
    base.update(kw)
    return TrainSettings(str(path), **base)


def test_long_csv_and_parquet_read_the_same_series(tmp_path):
    frame = long_frame()
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet")
    a = read_panel(tmp_path / "d.csv", "sales", id="shop")
    b = read_panel(tmp_path / "d.parquet", "sales", id="shop")
    assert a.layout == "long" and a.ids == ["s0", "s1", "s2"] == b.ids
    for x, y, (key, group) in zip(a.series, b.series, frame.groupby("shop"), strict=True):
        np.testing.assert_allclose(x.values, group["sales"].to_numpy(), rtol=1e-15)  # via text
        np.testing.assert_allclose(y.values, group["sales"].to_numpy(), rtol=1e-15)
        assert x.time_column == "day" and x.freq == "D" and x.id == key


def test_nixtla_names_need_no_flags():
    panel = read_panel(MACRO, "y")
    assert panel.layout == "long" and panel.id_column == "unique_id" and len(panel) == 8
    assert panel.series[0].time_column == "ds" and panel.series[0].freq == "QS-OCT"
    assert panel.series[0].season == 4 and len(panel.series[0]) == 203


def test_wide_columns_are_series_sharing_the_time_column(tmp_path):
    t = pd.date_range("2020-01-01", periods=20, freq="MS").strftime("%Y-%m")
    pd.DataFrame({"month": t, "A": np.arange(20.0), "B": np.arange(20.0) * 2}).to_csv(
        tmp_path / "w.csv", index=False
    )
    panel = read_panel(tmp_path / "w.csv", "A,B")
    assert panel.layout == "wide" and panel.ids == ["A", "B"]
    np.testing.assert_array_equal(panel.series[1].values, np.arange(20.0) * 2)
    assert panel.series[1].time_column == "month"


def test_split_per_series_matches_pandas(tmp_path):
    """Each series' own 70/15/15 split, checked against pandas' own slicing of its group."""
    frame = long_frame((40, 30))
    frame.to_csv(tmp_path / "d.csv", index=False)
    s = settings(tmp_path / "d.csv")
    pool = prepare_pool(s, load_panel(s))
    for member, (_, group) in zip(pool.members, frame.groupby("shop", sort=False), strict=True):
        n = len(group)
        n_test, n_val = round(0.15 * n), round(0.15 * n)
        train = group.iloc[: n - n_val - n_test]["sales"].to_numpy()
        test = group.iloc[n - n_test :]["sales"].to_numpy()
        assert member.parts.n_train == len(train) and member.parts.n_test == len(test)
        np.testing.assert_allclose(member.raw("test")[1][:, 0], test, rtol=1e-15)  # horizon 1
        targets = member.raw("train")[1][:, 0]  # every training target inside the train part
        np.testing.assert_allclose(targets, train[s.window :], rtol=1e-15)


def test_scaler_per_series_by_hand(tmp_path):
    """`window` scaling's floor is each series' own σ_Δ: the std of its train part's steps."""
    frame = long_frame((40, 30))
    frame.to_csv(tmp_path / "d.csv", index=False)
    s = settings(tmp_path / "d.csv")
    pool = prepare_pool(s, load_panel(s))
    for member, (_, group) in zip(pool.members, frame.groupby("shop", sort=False), strict=True):
        train = group["sales"].to_numpy()[: member.parts.n_train]
        steps = [train[i + 1] - train[i] for i in range(len(train) - 1)]
        mean = sum(steps) / len(steps)
        by_hand = (sum((d - mean) ** 2 for d in steps) / len(steps)) ** 0.5
        assert member.scaler.scale == pytest.approx(by_hand, rel=1e-12)
    assert pool.members[0].scaler.scale != pytest.approx(pool.members[1].scaler.scale)


def test_short_series_are_skipped_and_listed(tmp_path):
    long_frame().to_csv(tmp_path / "d.csv", index=False)
    s = settings(tmp_path / "d.csv")
    pool = prepare_pool(s, load_panel(s))
    assert pool.ids == ["s0", "s1"] and pool.skipped == {"s2": 7}
    x, _ = pool.tensors("train")
    assert len(x) == sum(len(split_origins(m.parts, 5, 1)["train"]) for m in pool.members)


def test_every_series_too_short_is_refused(tmp_path):
    long_frame((6, 7)).to_csv(tmp_path / "d.csv", index=False)
    s = settings(tmp_path / "d.csv")
    with pytest.raises(
        UserError, match="every series .* too short.*needs at least 8.*longest has 7"
    ):
        prepare_pool(s, load_panel(s))


def test_problems_name_the_column_or_series(tmp_path):
    frame = long_frame((12, 12)).astype({"price": str})
    frame.to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(UserError, match="no column 'store'.*--id"):
        read_panel(tmp_path / "d.csv", "sales", id="store")
    with pytest.raises(UserError, match="--id shop .* one --target"):
        read_panel(tmp_path / "d.csv", "sales,price", id="shop")
    frame.loc[15, "price"] = ""  # row 16 of the file
    frame.to_csv(tmp_path / "gap.csv", index=False)
    with pytest.raises(UserError, match=r"covariate column 'price' has a gap at row 16"):
        read_panel(tmp_path / "gap.csv", "sales", id="shop", covariates=("price",))
    frame = long_frame((12, 12))
    frame.loc[14, "day"] = frame.loc[13, "day"]  # the second series repeats a day
    frame.to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(UserError, match="series 's1'.*repeats"):
        read_panel(tmp_path / "dup.csv", "sales", id="shop")


@pytest.mark.parametrize("covariates", [[], ["price"]], ids=["joined values", "per series"])
def test_windows_made_batch_by_batch_are_the_stacked_ones(tmp_path, monkeypatch, covariates):
    """`Windows` (large pools) gives exactly `Pool.tensors`' rows, and training on it ends with
    the same weights, bit for bit."""
    from lstmbyhand.forecast import pool as pool_module
    from lstmbyhand.forecast.rundir import RunDir
    from lstmbyhand.forecast.train import train

    long_frame((40, 30)).to_csv(tmp_path / "d.csv", index=False)
    s = settings(tmp_path / "d.csv", past_covariates=covariates, hidden=3, epochs=2, patience=0)
    pool = prepare_pool(s, load_panel(s))
    x, y = pool.tensors("train")
    lazy = pool_module.Windows(pool.members, "train")
    pick = [len(x) - 1, 0, 25, 3, 24]  # across both series, out of order
    bx, by = lazy.__getitems__(pick)
    assert len(lazy) == len(x) and torch.equal(bx, x[pick]) and torch.equal(by, y[pick])
    if covariates:  # the same rows: training on them is the same (checked once, below)
        return
    train(s, tmp_path / "stacked", quiet=True)
    monkeypatch.setattr(pool_module, "LAZY_ABOVE", 0)
    train(s, tmp_path / "lazy", quiet=True)
    a, b = (
        RunDir(tmp_path / "stacked").read_weights()[0],
        RunDir(tmp_path / "lazy").read_weights()[0],
    )
    assert all(torch.equal(a[k], b[k]) for k in a)
