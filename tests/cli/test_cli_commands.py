"""Each command end to end on small real data: train -> evaluate -> forecast -> inspect."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.resources import files

import numpy as np
import pandas as pd
import pytest
from helpers import subprocess_env

from lstmbyhand.cli import main

AIRLINE = str(files("lstmbyhand") / "datasets" / "airline.csv")
NILE = str(files("lstmbyhand") / "datasets" / "nile.csv")
SMALL = ["--window", "12", "--hidden", "8", "--epochs", "3", "--quiet"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def airline_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "air"
    assert main(["train", AIRLINE, "--target", "passengers", *SMALL, "--horizon", "2",
                 "--out", str(out)]) == 0  # fmt: skip
    return out


def test_train_prints_a_summary(tmp_path, capsys):
    out = tmp_path / "nile"
    assert main(["train", NILE, "--target", "flow", *SMALL, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "trained 3 epochs" in text and str(out) in text


def test_evaluate_json_shape_and_baselines_by_hand(airline_run, capsys):
    assert main(["evaluate", str(airline_run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    naive = {"model", "naive", "seasonal_naive"}
    assert set(result["metrics"]) == naive | {"AutoETS", "AutoARIMA", "AutoTheta"}
    for m in result["metrics"].values():
        assert set(m) == {"mae", "rmse", "smape", "mase"}
        assert all(isinstance(v, float) and np.isfinite(v) for v in m.values())
    assert result["season"] == 12 and result["horizon"] == 2
    # the naive baseline recomputed from the CSV with pandas: the test part is the last n_test rows
    config = json.loads((airline_run / "config.json").read_text())
    y = pd.read_csv(AIRLINE)["passengers"].to_numpy(float)
    n_test = config["split"]["n_test"]
    start = len(y) - n_test
    errors, seasonal = [], []
    for t in range(start - 1, len(y) - 2):  # origins whose two targets are both in the test part
        for h in (1, 2):
            errors.append(abs(y[t + h] - y[t]))
            seasonal.append(abs(y[t + h] - y[t + h - 12]))
    assert result["windows"] == len(errors) // 2
    assert result["metrics"]["naive"]["mae"] == pytest.approx(np.mean(errors))
    assert result["metrics"]["seasonal_naive"]["mae"] == pytest.approx(np.mean(seasonal))
    train = y[: config["split"]["n_train"]]
    scale = np.mean(np.abs(train[12:] - train[:-12]))
    assert result["metrics"]["naive"]["mase"] == pytest.approx(np.mean(errors) / scale)


def test_evaluate_table(airline_run, capsys):
    assert main(["evaluate", str(airline_run)]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[1].split() == ["MAE", "RMSE", "sMAPE", "%", "MASE"]
    names = ["model", "naive", "seasonal_naive", "AutoETS", "AutoARIMA", "AutoTheta"]
    assert [line.split()[0] for line in lines[2:-1]] == names
    assert lines[-1].startswith("best: ")  # the winner, then the model against the best statistical


def test_evaluate_on_other_data_uses_that_file(airline_run, tmp_path, capsys):
    other = tmp_path / "more.csv"
    frame = pd.read_csv(AIRLINE)
    frame["passengers"] = frame["passengers"] * 2
    frame.to_csv(other, index=False)
    main(["evaluate", str(airline_run), "--json"])
    base = json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(airline_run), "--data", str(other), "--json"]) == 0
    doubled = json.loads(capsys.readouterr().out)
    assert doubled["data"] == str(other)
    assert doubled["metrics"]["naive"]["mae"] == pytest.approx(2 * base["metrics"]["naive"]["mae"])


def test_forecast_continues_the_months_recursively(airline_run, tmp_path, capsys):
    out, plot = tmp_path / "f.csv", tmp_path / "f.png"
    args = ["forecast", str(airline_run), "--data", AIRLINE, "--steps", "5"]
    assert main([*args, "--output", str(out), "--plot", str(plot)]) == 0
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["month", "passengers"]
    expect = pd.date_range("1961-01-01", periods=5, freq="MS")  # 5 steps, horizon 2: 3 rounds
    assert list(pd.to_datetime(frame["month"])) == list(expect)
    assert np.isfinite(frame["passengers"]).all()
    assert plot.stat().st_size > 0
    # without --output the same table goes to stdout
    capsys.readouterr()
    assert main(args) == 0
    printed = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    np.testing.assert_allclose(printed["passengers"], frame["passengers"])


def test_forecast_numeric_time_column(tmp_path, capsys):
    run = tmp_path / "nile"
    main(["train", NILE, "--target", "flow", *SMALL, "--out", str(run)])
    assert main(["forecast", str(run), "--data", NILE, "--steps", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-4] == "year,flow"
    assert [int(line.split(",")[0]) for line in lines[-3:]] == [1971, 1972, 1973]


def test_inspect_writes_gate_heatmaps(airline_run, tmp_path, capsys):
    plot = tmp_path / "gates.png"
    assert main(["inspect", str(airline_run), "--data", AIRLINE, "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    for gate in ("input_gate", "forget_gate", "candidate", "output_gate", "cell", "hidden"):
        assert gate in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_same_evaluation(tmp_path, capsys):
    results = []
    for name in ("a", "b"):
        main(
            [
                "train",
                NILE,
                "--target",
                "flow",
                *SMALL,
                "--seed",
                "7",
                "--out",
                str(tmp_path / name),
            ]
        )
        capsys.readouterr()
        main(["evaluate", str(tmp_path / name), "--json"])
        results.append(json.loads(capsys.readouterr().out)["metrics"])
    assert results[0] == results[1]


def test_console_entry_point_runs_as_a_subprocess(airline_run):
    env = subprocess_env()
    proc = subprocess.run([sys.executable, "-m", "lstmbyhand", "evaluate", str(airline_run), "--json"],
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "metrics" in json.loads(proc.stdout)
