"""The statistical forecasts kept across runs in the user's cache (baselines.py's `recall` and
`remember`): read back, they are the numbers statsforecast gives, and nothing is fitted; a damaged,
another fit's or another library version's file is ignored; the cache off writes nothing; one that
cannot be written does not fail the run."""

from __future__ import annotations

from importlib.resources import files

import numpy as np
import pytest
from statsforecast.models import AutoTheta

from lstmbyhand.forecast import baselines
from lstmbyhand.forecast.baselines import CACHE_ENV, Statistical, stored

NILE = str(files("lstmbyhand") / "datasets" / "nile.csv")
ORIGINS = np.array([59, 60, 61])


@pytest.fixture
def nile(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return np.loadtxt(NILE, delimiter=",", skiprows=1, usecols=1)


def _member(stat: Statistical, values: np.ndarray):
    """The parts of a prepared series that `stored` reads (no test part)."""
    return type("Member", (), {"statistical": stat, "origins": {}, "horizon": 2,
                               "series": type("S", (), {"values": values})})()  # fmt: skip


def _first_run(values: np.ndarray) -> np.ndarray:
    stat = Statistical(values[:60], 0)
    out = stat.at(values, ORIGINS, 2, ("AutoTheta",))["AutoTheta"]  # (3, 2)
    stored([_member(stat, values)])  # what `train` does at its end: the cache written
    return out


def _statsforecast(values: np.ndarray) -> np.ndarray:
    fit = AutoTheta(season_length=1).fit(values[:60])
    return np.stack([fit.forward(values[: t + 1], 2)["mean"] for t in ORIGINS])


def test_a_later_run_reads_the_forecasts_back_and_fits_nothing(nile, tmp_path):
    first = _first_run(nile)
    np.testing.assert_allclose(first, _statsforecast(nile), rtol=1e-12)
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1
    later = Statistical(nile[:60], 0)
    again = later.at(nile, ORIGINS, 2, ("AutoTheta",))["AutoTheta"]
    np.testing.assert_array_equal(again, first)
    assert later.fitted == {}  # statsforecast not needed
    assert later.used() == ("AutoTheta",)
    # another history (one the cache lacks) is forecast by the model, fitted then
    one = later.forecast("AutoTheta", nile[:70], 2)
    np.testing.assert_allclose(
        one, AutoTheta(season_length=1).fit(nile[:60]).forward(nile[:70], 2)["mean"]
    )
    assert set(later.fitted) == {"AutoTheta"}


def test_another_fit_never_takes_them(nile):
    _first_run(nile)
    for other in (Statistical(nile[:60], 4), Statistical(nile[1:61], 0)):
        other.at(nile, ORIGINS, 2, ("AutoTheta",))
        assert set(other.fitted) == {"AutoTheta"}


def test_a_damaged_file_is_ignored_and_written_again(nile, tmp_path):
    first = _first_run(nile)
    (path,) = (tmp_path / "cache").glob("*.safetensors")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # one forecast's bytes changed: the checksum no longer matches
    path.write_bytes(bytes(data))
    assert baselines.recall(Statistical(nile[:60], 0).key) == {}
    later = Statistical(nile[:60], 0)
    np.testing.assert_array_equal(later.at(nile, ORIGINS, 2, ("AutoTheta",))["AutoTheta"], first)
    assert set(later.fitted) == {"AutoTheta"}  # computed again
    stored([_member(later, nile)])
    assert baselines.recall(later.key)[("AutoTheta", 2)]  # and the file whole again


def test_other_library_versions_are_ignored(nile, monkeypatch):
    _first_run(nile)
    monkeypatch.setattr(baselines, "_versions", lambda: "statsforecast=0.0")
    later = Statistical(nile[:60], 0)
    later.at(nile, ORIGINS, 2, ("AutoTheta",))
    assert set(later.fitted) == {"AutoTheta"}


def test_the_cache_off_writes_nothing(nile, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, "")
    monkeypatch.chdir(tmp_path)
    assert baselines.cache_dir() is None
    _first_run(nile)
    assert list(tmp_path.rglob("*.safetensors")) == []


def test_a_cache_that_cannot_be_written_does_not_fail_the_run(nile, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(CACHE_ENV, str(blocker / "cache"))
    np.testing.assert_allclose(_first_run(nile), _statsforecast(nile), rtol=1e-12)


def test_the_default_folder_is_the_users_cache(monkeypatch, tmp_path):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert baselines.cache_dir() == tmp_path / "lstmbyhand" / "statistical"
