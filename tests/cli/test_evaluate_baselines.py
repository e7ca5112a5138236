"""`evaluate` with and without the statistical baselines, and `backtest`, through the CLI."""

from __future__ import annotations

import json
from importlib.resources import files

import pytest

from lstmbyhand.cli import main

NILE = str(files("lstmbyhand") / "datasets" / "nile.csv")
TINY = ["--hidden", "2", "--epochs", "1", "--quiet"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def nile_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "nile"
    assert main(["train", NILE, "--target", "flow", *TINY, "--out", str(out)]) == 0
    return out


def test_evaluate_json_names_the_winner(nile_run, capsys):
    assert main(["evaluate", str(nile_run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    table = result["metrics"]
    assert set(table) == {"model", "naive", "AutoETS", "AutoARIMA", "AutoTheta"}  # no season
    assert result["best"] == min(table, key=lambda n: table[n]["mae"])
    assert result["base"] == "median"


def test_no_baselines_skips_the_statistical_models(nile_run, capsys):
    assert main(["evaluate", str(nile_run), "--no-baselines"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines[2:-1]] == ["model", "naive"]
    assert lines[-1].startswith("best: ") and "statistical" not in lines[-1]


def test_backtest_rejects_too_many_folds(tmp_path, capsys):
    code = main(["backtest", NILE, "--target", "flow", "--folds", "7", *TINY[:-1],
                 "--out", str(tmp_path / "bt")])  # fmt: skip
    assert code == 2
    assert "use fewer --folds" in capsys.readouterr().err
