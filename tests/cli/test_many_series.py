"""The commands on many series, covariates and quantiles, in process (lstmbyhand.cli.main)."""

from __future__ import annotations

import json
from importlib.resources import files

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import one_line_error
from statsforecast import StatsForecast
from statsforecast.models import AutoETS

from lstmbyhand.cli import main
from lstmbyhand.forecast.rundir import RunDir

pytestmark = pytest.mark.usefixtures("one_thread")
MACRO = str(files("lstmbyhand") / "datasets" / "macro.csv")
FAST = ["--base", "none", "--window", "8", "--hidden", "4", "--epochs", "2", "--quiet"]


@pytest.fixture(scope="module")
def macro3(tmp_path_factory):
    """Three of the bundled series (Nixtla's names), the last 80 quarters of each."""
    frame = pd.read_csv(MACRO)
    frame = (
        frame[frame["unique_id"].isin(["realgdp", "cpi", "unemp"])].groupby("unique_id").tail(80)
    )
    path = tmp_path_factory.mktemp("macro") / "macro3.csv"
    frame.to_csv(path, index=False)
    return str(path), frame


def test_many_series_with_intervals_end_to_end(tmp_path, capsys, macro3):
    data, frame = macro3
    run = tmp_path / "run"
    assert main(["train", data, "--quantiles", "0.1,0.5,0.9", *FAST, "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert [r["id"] for r in config["panel"]["series"]] == ["realgdp", "cpi", "unemp"]
    assert config["panel"]["layout"] == "long" and config["panel"]["id"] == "unique_id"
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json", "--no-baselines"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["series"]) == {"realgdp", "cpi", "unemp"}
    assert result["points"] == 3 * 12  # 15 % of 80 per series, horizon 1
    per = [result["series"][k]["naive"]["mae"] for k in ("realgdp", "cpi", "unemp")]
    assert result["metrics"]["naive"]["mae"] == pytest.approx(np.mean(per))  # equal counts
    interval = result["intervals"]["model"]["80"]
    assert 0 <= interval["coverage"] <= 1 and interval["width"] > 0
    out = tmp_path / "f.csv"
    assert main(["forecast", str(run), "--data", data, "--steps", "3", "--output", str(out),
                 "--plot", str(tmp_path / "f.png")]) == 0  # fmt: skip
    fc = pd.read_csv(out)
    assert list(fc.columns) == ["unique_id", "ds", "y", "y_q0.1", "y_q0.9"]
    assert list(fc["unique_id"]) == ["realgdp"] * 3 + ["cpi"] * 3 + ["unemp"] * 3
    assert (fc["y_q0.1"] <= fc["y"]).all() and (fc["y"] <= fc["y_q0.9"]).all()
    assert list(fc["ds"][:3]) == ["2009-10-01", "2010-01-01", "2010-04-01"]
    assert (tmp_path / "f.png").stat().st_size > 0


def test_unknown_ids_and_missing_columns_are_one_line(tmp_path, capsys, macro3):
    data, frame = macro3
    run = tmp_path / "run"
    assert main(["train", data, *FAST, "--out", str(run)]) == 0
    other = frame.copy()
    other.loc[other["unique_id"] == "cpi", "unique_id"] = "m1"
    other.to_csv(tmp_path / "other.csv", index=False)
    one_line_error(capsys, ["forecast", str(run), "--data", str(tmp_path / "other.csv"),
                            "--steps", "2"], "series 'm1'", "not one the run was trained on")  # fmt: skip
    one_line_error(capsys, ["train", data, "--target", "y", "--id", "store", "--out",
                            str(tmp_path / "r2")], "no column 'store'", "--id")  # fmt: skip


def test_resuming_a_many_series_run_ends_where_an_uninterrupted_one_does(tmp_path, macro3):
    data, _ = macro3
    fast = [f for f in FAST if f not in ("--epochs", "2")]
    assert main(["train", data, *fast, "--epochs", "3", "--patience", "0", "--out",
                 str(tmp_path / "a")]) == 0  # fmt: skip
    assert main(["train", data, *fast, "--epochs", "1", "--patience", "0", "--out",
                 str(tmp_path / "b")]) == 0  # fmt: skip
    assert main(["train", data, "--epochs", "3", "--quiet", "--out", str(tmp_path / "b"),
                 "--resume"]) == 0  # fmt: skip
    a, b = RunDir(tmp_path / "a").read_weights()[0], RunDir(tmp_path / "b").read_weights()[0]
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_per_series_baselines_are_statsforecasts_own(tmp_path, capsys):
    """Each series' AutoETS fitted on its own train + validation part, run forward over its own
    test part: statsforecast's cross_validation(refit=False) per series."""
    rng = np.random.default_rng(4)
    parts = [pd.DataFrame({"unique_id": k, "ds": np.arange(40),
                           "y": 10 * (i + 1) + rng.normal(0, 1, 40).cumsum()})
             for i, k in enumerate(["a", "b"])]  # fmt: skip
    frame = pd.concat(parts, ignore_index=True)
    frame.to_csv(tmp_path / "d.csv", index=False)
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "d.csv"), *FAST, "--season", "0", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    cv = StatsForecast(models=[AutoETS(season_length=1)], freq=1).cross_validation(
        h=1, df=frame, n_windows=6, step_size=1, refit=False
    )
    for key in ("a", "b"):
        rows = cv[cv["unique_id"] == key]
        mae = np.abs(rows["y"] - rows["AutoETS"]).mean()
        assert result["series"][key]["AutoETS"]["mae"] == pytest.approx(mae, rel=1e-9)
    assert result["best"] in result["metrics"]


def test_covariates_are_restored_and_future_ones_required(tmp_path, capsys):
    n = 40
    t = pd.date_range("2023-01-02", periods=n, freq="D")
    promo = (np.arange(n) % 5 == 0).astype(float)
    frame = pd.DataFrame({"day": t.strftime("%Y-%m-%d"), "y": 20 + 6 * promo + np.sin(np.arange(n)),
                          "temp": np.cos(np.arange(n) / 4), "promo": promo})  # fmt: skip
    frame.to_csv(tmp_path / "d.csv", index=False)
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "d.csv"), "--target", "y", *FAST, "--past-covariates",
                 "temp", "--future-covariates", "promo", "--calendar", "dayofweek",
                 "--out", str(run)]) == 0  # fmt: skip
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["future_covariates"] == ["promo"]
    assert len(config["panel"]["series"][0]["covariates"]["center"]) == 2
    assert main(["evaluate", str(run), "--no-baselines"]) == 0
    one_line_error(capsys, ["forecast", str(run), "--data", str(tmp_path / "d.csv"), "--steps",
                            "3"], "needs the future covariates 'promo' for 3 steps")  # fmt: skip
    future = pd.DataFrame({"day": pd.date_range(t[-1], periods=4, freq="D")[1:].strftime("%Y-%m-%d"),
                           "promo": [1.0, 0.0, 0.0]})  # fmt: skip
    future.to_csv(tmp_path / "future.csv", index=False)
    capsys.readouterr()
    assert main(["forecast", str(run), "--data", str(tmp_path / "d.csv"), "--steps", "3",
                 "--future", str(tmp_path / "future.csv")]) == 0  # fmt: skip
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "day,y" and len(lines) == 4
    one_line_error(capsys, ["forecast", str(run), "--data", str(tmp_path / "d.csv"), "--steps",
                            "4", "--future", str(tmp_path / "future.csv")],
                   "for 4 steps", "has 3")  # fmt: skip


def test_backtest_cuts_every_series_and_pools_their_folds(tmp_path, capsys, macro3):
    data, frame = macro3
    out = tmp_path / "bt"
    assert main(["backtest", data, "--folds", "2", *FAST[:-1], "--no-baselines", "--json",
                 "--out", str(out)]) == 0  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    cut = pd.read_csv(out / "fold-1.csv")
    assert cut.groupby("unique_id").size().to_dict() == {"cpi": 68, "realgdp": 68, "unemp": 68}
    assert [f["points"] for f in result["folds"]] == [36, 36] and result["series"] == 3
    naive = [f["metrics"]["naive"]["mae"] for f in result["folds"]]
    assert result["pooled"]["naive"]["mae"] == pytest.approx(np.mean(naive))


def test_refit_on_many_series_sees_each_series_last_value(tmp_path, capsys, macro3):
    """Only cpi's last quarter changed: the evaluated weights (that value is in their test part) stay
    byte for byte, the refit weights (trained on every series' whole length) change, and forecast
    uses the refit ones and says so."""
    from lstmbyhand.forecast.rundir import REFIT

    data, frame = macro3
    other = frame.copy()
    last_cpi = other.index[other["unique_id"] == "cpi"][-1]
    other.loc[last_cpi, "y"] = other.loc[last_cpi, "y"] * 1.5
    other.to_csv(tmp_path / "other.csv", index=False)
    runs = [tmp_path / "a", tmp_path / "b"]
    for path, run in zip([data, str(tmp_path / "other.csv")], runs, strict=True):
        assert main(["train", path, *FAST, "--refit", "--out", str(run)]) == 0
    a, b = RunDir(runs[0]), RunDir(runs[1])
    for name in a.read_weights()[0]:
        assert torch.equal(a.read_weights()[0][name], b.read_weights()[0][name]), name
    assert any(
        not torch.equal(a.read_refit()[0][name], b.read_refit()[0][name])
        for name in a.read_refit()[0]
    )
    assert (runs[0] / REFIT).exists()
    capsys.readouterr()
    assert main(["forecast", str(runs[0]), "--data", data, "--steps", "2",
                 "--output", str(tmp_path / "f.csv")]) == 0  # fmt: skip
    assert "refit.safetensors" in capsys.readouterr().err
    assert (
        list(pd.read_csv(tmp_path / "f.csv")["unique_id"])
        == ["realgdp"] * 2 + ["cpi"] * 2 + ["unemp"] * 2
    )
