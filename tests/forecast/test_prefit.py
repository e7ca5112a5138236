"""The statistical fits made ahead in a child process (forecast/prefit.py): the child's forecasts
are exactly the ones `train` asks for, equal to the in-process fit (and to statsforecast called
directly); taken through `baselines.expect`, nothing is fitted in process; a child that fails, is
killed or made another fit's forecasts leaves the run to fit in process, with the same numbers."""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import replace
from importlib.resources import files

import numpy as np
import pytest
from statsforecast.models import AutoETS

from lstmbyhand.errors import UserError
from lstmbyhand.forecast import baselines, prefit
from lstmbyhand.forecast.baselines import CACHE_ENV
from lstmbyhand.forecast.config import TrainSettings
from lstmbyhand.forecast.data import read_series
from lstmbyhand.forecast.prepare import Prepared, prepare

NILE = str(files("lstmbyhand") / "datasets" / "nile.csv")
SETTINGS = TrainSettings(NILE, "flow", window=8, horizon=2, season=0)


def _prepared() -> Prepared:
    prep = prepare(SETTINGS, read_series(NILE, "flow"))
    prep.statistical.cached = {}  # no cache file: everything computed (or taken) here
    return prep


def _as_train_asks(prep: Prepared) -> baselines.Known:
    """What a train of `prep` asks its fit for, by the paths train takes: the network's inputs of
    the train and validation windows, then the stored test forecasts."""
    prep.tensors("train")
    prep.tensors("val")
    baselines.test_forecasts(prep)
    return prep.statistical.known


def _assert_same(a: baselines.Known, b: baselines.Known) -> None:
    assert set(a) == set(b)
    for mh in a:
        assert list(a[mh]) == list(b[mh]), mh  # the same histories, in the same order
        for key in a[mh]:
            np.testing.assert_array_equal(a[mh][key], b[mh][key])


@pytest.fixture(scope="module")
def in_process() -> baselines.Known:
    """The in-process fit's forecasts (statsforecast imported here, before any child forks)."""
    return _as_train_asks(_prepared())


def test_the_child_makes_what_train_asks_equal_to_the_in_process_fit(in_process):
    prep = _prepared()
    made = prefit.Child(prep).collect()
    _assert_same(made, in_process)
    assert prep.statistical.fitted == {}  # all of it was the child's
    # anchored outside our code: AutoETS itself, fitted on everything before the test split
    n = prep.parts.test_start
    fit = AutoETS(season_length=1).fit(prep.series.values[:n])
    for t in prep.origins["test"][:3]:
        key = baselines._digest(prep.series.values[: t + 1])
        want = fit.forward(prep.series.values[: t + 1], 2)["mean"]
        np.testing.assert_allclose(made[("AutoETS", 2)][key], want, rtol=1e-12)


def test_taken_through_expect_nothing_is_fitted_in_process(in_process):
    prep = _prepared()
    prep.statistical.cached = None  # as train has it: the first miss looks for what was made
    baselines.expect(prep.statistical.key, prefit.Child(prep).collect)
    _assert_same(_as_train_asks(prep), in_process)
    assert prep.statistical.fitted == {}
    assert prep.statistical.key not in baselines._AHEAD  # taken once


def _fails(prep):
    raise RuntimeError("the child's fit broke")


@pytest.mark.parametrize("how", ["raises", "killed", "another fit"])
def test_a_failed_child_leaves_the_fit_to_the_parent_with_the_same_numbers(
    in_process, monkeypatch, how
):
    if how == "raises":
        monkeypatch.setattr(prefit, "make", _fails)  # the forked child has it too
    prep = _prepared()
    child = prefit.Child(prep)
    assert child.pid > 0
    if how == "killed":
        os.kill(child.pid, signal.SIGKILL)
    if how == "another fit":
        child.key = "a fit of other values"  # e.g. the file changed between the two reads
    assert child.collect() == {}
    assert child.pid == 0  # reaped
    prep.statistical.cached = None
    baselines.expect(prep.statistical.key, child.collect)
    _assert_same(_as_train_asks(prep), in_process)
    assert set(prep.statistical.fitted) == {"AutoETS", "AutoARIMA", "AutoTheta"}


def test_a_child_never_collected_is_stopped_at_exit():
    child = prefit.Child(_prepared())
    pid = child.pid
    child.stop()  # what atexit calls
    assert child.pid == 0 and child.fd == -1
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # gone and reaped: no zombie left


def test_start_refuses_what_train_refuses_and_forks_nothing_here(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    (tmp_path / "empty.csv").write_text("")
    cases = {
        str(tmp_path / "missing.csv"): "no such file",
        str(tmp_path): "is a directory",
        str(tmp_path / "empty.csv"): "is empty",
    }
    for data, message in cases.items():
        with pytest.raises(UserError, match=message):
            prefit.start(TrainSettings(data, "y"))
    with pytest.raises(UserError, match="window"):
        prefit.start(TrainSettings(NILE, "flow", window=0))
    before = dict(baselines._AHEAD)
    prefit.start(SETTINGS)  # torch is imported in this process: nothing to overlap
    assert baselines._AHEAD == before


def test_the_child_is_started_only_where_it_is_safe_and_can_help(monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "torch")  # as in `lstmbyhand train` before torch loads
    monkeypatch.delenv(prefit.SWITCH, raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert prefit._wanted(SETTINGS)
    big = tmp_path / "big.csv"
    big.write_bytes(b"0" * (prefit.LIMIT + 1))
    for other in [replace(SETTINGS, base="none"), replace(SETTINGS, id="unique_id"),
                  replace(SETTINGS, target="a,b"), replace(SETTINGS, data=str(big))]:  # fmt: skip
        assert not prefit._wanted(other), other
    monkeypatch.setenv("WORLD_SIZE", "2")  # under torchrun
    assert not prefit._wanted(SETTINGS)
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv(prefit.SWITCH, "0")  # turned off
    assert not prefit._wanted(SETTINGS)
