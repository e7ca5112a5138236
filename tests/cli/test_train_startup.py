"""What `lstmbyhand train` does before torch is imported: a data file it cannot read is refused
first (one line, exit 2, torch never imported), and a series' first run fits the statistical
models in a child process while torch loads (forecast/prefit.py), storing the very forecasts the
in-process fit makes."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.resources import files

import numpy as np
from helpers import subprocess_env

from lstmbyhand.forecast.baselines import CACHE_ENV, stored
from lstmbyhand.forecast.config import TrainSettings
from lstmbyhand.forecast.data import read_series
from lstmbyhand.forecast.prepare import prepare
from lstmbyhand.forecast.rundir import RunDir

NILE = str(files("lstmbyhand") / "datasets" / "nile.csv")
# main(argv), then which of torch and statsforecast this process imported, as JSON on stdout
PROBE = (
    "import json, sys; from lstmbyhand.cli import main; code = main(sys.argv[1:]); "
    "print(json.dumps({m: m in sys.modules for m in ('torch', 'statsforecast')})); sys.exit(code)"
)


def _train(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE, "train", *args], capture_output=True,
                          text=True, env=subprocess_env(**env), timeout=300)  # fmt: skip


def test_a_missing_or_unreadable_file_is_refused_before_torch_is_imported(tmp_path):
    resume = ["--resume", "--out", str(tmp_path / "run")]  # refused before the run is read
    cases = [(tmp_path / "missing.csv", "no such file", []), (tmp_path, "a directory", resume)]
    for data, message, more in cases:
        done = _train(str(data), "--target", "y", *more)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr
        assert json.loads(done.stdout.splitlines()[-1])["torch"] is False


def test_a_first_run_stores_the_in_process_fits_forecasts_made_by_the_child(tmp_path, monkeypatch):
    run = tmp_path / "run"
    flags = ["--target", "flow", "--window", "8", "--horizon", "2", "--season", "0"]
    done = _train(
        NILE,
        *flags,
        "--epochs",
        "1",
        "--hidden",
        "4",
        "--out",
        str(run),
        "--quiet",
        **{CACHE_ENV: str(tmp_path / "cache")},
    )  # fmt: skip  (empty: a first run)
    assert done.returncode == 0, done.stderr
    imported = json.loads(done.stdout.splitlines()[-1])
    assert imported == {"torch": True, "statsforecast": False}  # the child fitted, not train
    monkeypatch.setenv(CACHE_ENV, "")  # the reference: fitted here, nothing read from a cache
    s = TrainSettings(NILE, "flow", window=8, horizon=2, season=0)
    prep = prepare(s, read_series(NILE, "flow"))
    prep.tensors("train")  # the network's inputs ask for the base, as train does
    prep.tensors("val")
    arrays, meta = stored([prep])
    saved = RunDir(run).read_statistical()
    assert saved is not None and saved[1] == meta
    assert set(saved[0]) == set(arrays)
    for name, rows in arrays.items():
        np.testing.assert_array_equal(saved[0][name], rows)
