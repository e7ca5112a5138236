"""The series a run keeps (parsed.py, RUN/series.safetensors): `evaluate` of the run on its own,
unchanged data file takes them instead of parsing the file with pandas, with the same numbers;
a changed file, a calendar run, or a missing file is parsed again; a damaged or foreign one is
refused."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.resources import files

import numpy as np
import pytest
from helpers import subprocess_env

from lstmbyhand.errors import UserError
from lstmbyhand.forecast import panel as panel_module
from lstmbyhand.forecast.config import TrainSettings
from lstmbyhand.forecast.evaluate import evaluate_pool
from lstmbyhand.forecast.parsed import pack, unpack
from lstmbyhand.forecast.pool import load_panel
from lstmbyhand.forecast.restore import open_pool
from lstmbyhand.forecast.rundir import SERIES
from lstmbyhand.forecast.train import train

AIRLINE = str(files("lstmbyhand") / "datasets" / "airline.csv")
SMALL = dict(window=6, hidden=4, epochs=2, base="none", patience=0)


def long_csv(path, shift: float = 0.0) -> str:
    """Two shops, numeric time, a price covariate (past)."""
    rng = np.random.default_rng(0)
    rows = ["shop,t,sales,price"]
    for shop in ("A", "B"):
        for t in range(40):
            sales = 10 + 3 * np.sin(t / 3) + rng.normal() + shift
            rows.append(f"{shop},{t},{sales:.3f},{1 + (t % 5) * 0.1:.1f}")
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def scored(run) -> dict:
    model, _, config, pool = open_pool(run)
    return evaluate_pool(model, pool, config.season, baselines=False)


def parsing_counted(monkeypatch) -> list[str]:
    """Every file `read_panel` parses (pandas), recorded."""
    seen: list[str] = []
    inner = panel_module.read_table

    def counted(path, data=None):
        seen.append(str(path))
        return inner(path, data)

    monkeypatch.setattr(panel_module, "read_table", counted)
    return seen


CASES = {
    "dates": lambda tmp: TrainSettings(AIRLINE, "passengers", **SMALL),  # type: ignore[arg-type]
    "long, covariates": lambda tmp: TrainSettings(
        long_csv(tmp / "long.csv"), "sales", id="shop", past_covariates=["price"], **SMALL
    ),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("case", CASES)
def test_evaluate_takes_the_kept_series_with_the_same_numbers(tmp_path, monkeypatch, case):
    s = CASES[case](tmp_path)
    train(s, tmp_path / "run", quiet=True)
    assert (tmp_path / "run" / SERIES).is_file()
    seen = parsing_counted(monkeypatch)
    fast = scored(tmp_path / "run")
    assert seen == []  # the kept series: the data file was not parsed
    shutil.copytree(tmp_path / "run", tmp_path / "slow")
    (tmp_path / "slow" / SERIES).unlink()
    slow = scored(tmp_path / "slow")
    assert len(seen) == 1  # without the file: parsed, as before
    assert fast == slow
    # the kept panel is the parsed one, field by field (dates as the same nanoseconds)
    kept = open_pool(tmp_path / "run")[3].panel
    parsed = open_pool(tmp_path / "slow")[3].panel
    assert (kept.layout, kept.id_column, kept.path, kept.sha256, kept.held) == (
        parsed.layout, parsed.id_column, parsed.path, parsed.sha256, parsed.held)  # fmt: skip
    for a, b in zip(kept.series, parsed.series, strict=True):
        np.testing.assert_array_equal(a.values, b.values)
        assert (a.id, a.target, a.time_column, a.freq, a.sha256, a.path) == (
            b.id, b.target, b.time_column, b.freq, b.sha256, b.path)  # fmt: skip
        ns = b.time.asi8 if hasattr(b.time, "asi8") else b.time
        np.testing.assert_array_equal(np.asarray(a.time).view(np.int64), ns)
        assert (a.covariates is None) == (b.covariates is None)
        if a.covariates is not None:
            np.testing.assert_array_equal(a.covariates, b.covariates)


def test_a_changed_data_file_is_parsed_again(tmp_path, monkeypatch):
    s = TrainSettings(long_csv(tmp_path / "d.csv"), "sales", id="shop",
                      past_covariates=["price"], **SMALL)  # type: ignore[arg-type]  # fmt: skip
    train(s, tmp_path / "run", quiet=True)
    before = scored(tmp_path / "run")
    long_csv(tmp_path / "d.csv", shift=5.0)  # the same columns and length, other values
    seen = parsing_counted(monkeypatch)
    after = scored(tmp_path / "run")
    assert seen == [str((tmp_path / "d.csv").resolve())]  # detected by its SHA-256: parsed
    assert after["metrics"]["naive"] != before["metrics"]["naive"]
    (tmp_path / "run" / SERIES).unlink()
    assert scored(tmp_path / "run") == after  # what parsing the new file gives


def test_a_calendar_run_parses_the_file(tmp_path, monkeypatch):
    s = TrainSettings(AIRLINE, "passengers", calendar=["month"], **SMALL)  # type: ignore[arg-type]
    train(s, tmp_path / "run", quiet=True)
    seen = parsing_counted(monkeypatch)
    scored(tmp_path / "run")
    assert len(seen) == 1  # calendar features need pandas dates


def test_a_damaged_or_foreign_file_is_refused(tmp_path):
    s = TrainSettings(AIRLINE, "passengers", **SMALL)  # type: ignore[arg-type]
    for name in ("a", "b"):
        train(s, tmp_path / name, quiet=True)
    shutil.copy(tmp_path / "b" / SERIES, tmp_path / "a" / SERIES)
    with pytest.raises(UserError, match="belongs to another run"):
        open_pool(tmp_path / "a")
    data = bytearray((tmp_path / "b" / SERIES).read_bytes())
    data[-3] ^= 1  # one bit of a value
    (tmp_path / "b" / SERIES).write_bytes(bytes(data))
    with pytest.raises(UserError, match="kept series .* damaged"):
        open_pool(tmp_path / "b")


def test_pack_keeps_numbers_floats_and_no_time(tmp_path):
    path = tmp_path / "w.csv"
    path.write_text("x,A,B\n" + "".join(f"{0.5 * k},{k},{k * k}\n" for k in range(30)))
    for time in (None, ""):  # float stamps (first column), then no time column
        s = TrainSettings(str(path), "A,B", time=time)
        panel = load_panel(s)
        arrays, meta = pack(panel)  # type: ignore[misc]
        back = unpack(arrays, meta, panel.path, panel.sha256)
        for a, b in zip(back.series, panel.series, strict=True):
            assert (a.freq, a.time_column, a.id) == (b.freq, b.time_column, b.id)
            if b.time is None:
                assert a.time is None
            else:
                assert a.time.dtype == b.time.dtype == np.float64
                np.testing.assert_array_equal(a.time, b.time)
    with pytest.raises(ValueError):
        unpack({**arrays, "9.values": arrays["0.values"]}, meta, panel.path, panel.sha256)


def test_evaluate_of_a_kept_run_imports_no_pandas(tmp_path):
    s = TrainSettings(AIRLINE, "passengers", **SMALL)  # type: ignore[arg-type]
    train(s, tmp_path / "run", quiet=True)
    probe = ("import sys; from lstmbyhand.cli import main; code = main(sys.argv[1:]); "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'pandas', 'pyarrow'}))")  # fmt: skip
    argv = ["evaluate", str(tmp_path / "run"), "--no-baselines"]  # base none: nothing stored
    done = subprocess.run([sys.executable, "-c", probe, *argv],
                          capture_output=True, text=True, env=subprocess_env(), timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
