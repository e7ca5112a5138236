"""A rank's two-pass read (outline.py): the whole file's read restricted to its series, its peak
rows, and errors that are the one-process line on every rank."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lstmbyhand.errors import UserError
from lstmbyhand.forecast import distributed, outline, pool
from lstmbyhand.forecast.config import TrainSettings
from lstmbyhand.forecast.data import read_table
from lstmbyhand.forecast.panel import Reading, read_panel
from lstmbyhand.forecast.pool import load_panel, prepare_pool
from lstmbyhand.forecast.train import member_row

LENGTHS = (20, 13, 9, 30, 4, 25, 17)  # series 4 is too short for window 5


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Chunks and batches of 7 rows: series cross chunk and row-group boundaries."""
    monkeypatch.setattr(outline, "CHUNK_ROWS", 7)


def long_frame(lengths=LENGTHS) -> pd.DataFrame:
    """Long data; the third series' days start at 01:00 (pandas then writes every time of the
    column with its time of day), an id missing on one row, an integer target with a gap."""
    rng = np.random.default_rng(3)
    parts = []
    for k, n in enumerate(lengths):
        t = pd.date_range("2021-01-01", periods=n, freq="D") + pd.Timedelta(hours=int(k == 2))
        parts.append(pd.DataFrame({"shop": float(k + 1), "day": t,
                                   "sales": rng.integers(0, 50, n) + 100 * k,
                                   "price": rng.normal(5, 1, n)}))  # fmt: skip
    frame = pd.concat(parts, ignore_index=True)
    frame["sales"] = frame["sales"].astype("Int64")
    frame.loc[40, "sales"] = pd.NA  # in series 3 ("3.0", rows 34-42)
    return frame


def write(frame: pd.DataFrame, path) -> None:
    """CSV; Parquet from pandas; or (".plain.parquet") from pyarrow alone, without pandas'
    metadata, the ids integers with a gap (pandas reads such a column as floats)."""
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.name.endswith(".plain.parquet"):
        ids = [None if np.isnan(v) else int(v) for v in frame["shop"]]
        table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
        table = table.set_column(0, "shop", pa.array(ids, pa.int64()))
        pq.write_table(table, path, row_group_size=10)
    else:
        frame.to_parquet(path, row_group_size=10)


def same_series(a, b) -> None:
    assert a.id == b.id and a.time_column == b.time_column and a.freq == b.freq
    assert np.array_equal(a.values, b.values) and a.sha256 == b.sha256
    assert (a.time is None) == (b.time is None) and (
        a.time is None or np.array_equal(a.time, b.time)
    )
    assert (a.covariates is None) == (b.covariates is None)
    assert a.covariates is None or np.array_equal(a.covariates, b.covariates)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".plain.parquet"])
def test_a_ranks_long_read_is_the_whole_read_restricted_to_its_ids(tmp_path, suffix):
    path = tmp_path / f"d{suffix}"
    frame = long_frame()
    frame.loc[5, "shop"] = np.nan  # a row whose id is missing: its own series, id ""
    write(frame, path)
    args = ("sales", "day", "shop", "interpolate", ("price",))
    whole = read_panel(path, *args)
    cells = read_table(path)  # the one-process text cells, every column, every row
    keys = cells["shop"].astype(str).str.strip()
    plan = outline.outline(path, Reading(*args))
    assert plan is not None and plan.ids == whole.ids and plan.lengths == whole.lengths
    assert plan.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    rng = random.Random(0)
    for size in (1, 2, 3, len(whole.ids)):
        ids = set(rng.sample(whole.ids, size))
        panel, failure = outline.read_part(plan, ids)
        assert failure is None and panel.partial and panel.ids == whole.ids
        want = [x for x in whole.series if x.id in ids]  # in the file's order
        assert [x.id for x in panel.series] == [x.id for x in want]
        for a, b in zip(panel.series, want, strict=True):
            same_series(a, b)
        part = outline._csv_part if suffix == ".csv" else outline._parquet_part
        table, held = part(plan, ids, plan.needed(plan.targets))
        pd.testing.assert_frame_equal(  # the same text, row numbers and all
            table, cells[keys.isin(ids).to_numpy()][table.columns], check_index_type=False
        )
        assert held <= len(table) + outline.CHUNK_ROWS


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_ranks_wide_read_is_the_whole_read_restricted_to_its_columns(tmp_path, suffix):
    rng = np.random.default_rng(4)
    t = pd.date_range("2020-01-01", periods=40, freq="MS")
    frame = pd.DataFrame({"month": t.strftime("%Y-%m"), **{
        name: rng.normal(10 * k, 1, 40) for k, name in enumerate("ABCDE")}})  # fmt: skip
    frame.loc[[3, 9], "C"] = np.nan
    write(frame, tmp_path / f"w{suffix}")
    args = ("A,B,C,D,E", None, None, "drop")
    whole = read_panel(tmp_path / f"w{suffix}", *args)
    plan = outline.outline(tmp_path / f"w{suffix}", Reading(*args))
    assert plan is not None and plan.layout == "wide" and plan.lengths == whole.lengths
    assert plan.lengths["C"] == 38 and plan.needed(["B"]) == ["month", "B"]  # only its column
    panel, failure = outline.read_part(plan, {"B", "C"})
    assert failure is None and [x.id for x in panel.series] == ["B", "C"]
    for a, b in zip(panel.series, whole.series[1:3], strict=True):
        same_series(a, b)


def settings(path, **kw) -> TrainSettings:
    base = dict(target="sales", id="shop", time="day", window=5, base="none", fill="interpolate")
    base.update(kw)
    return TrainSettings(str(path), **base)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_each_rank_holds_its_own_series_and_prepares_them_as_one_process(tmp_path, suffix):
    path = tmp_path / f"d{suffix}"
    write(long_frame(), path)
    s = settings(path, past_covariates=["price"])
    whole = prepare_pool(s, load_panel(s))
    rows = {m.series.id: member_row(m) for m in whole.members}
    total = sum(LENGTHS)
    owned = []
    for rank in range(3):
        panel = load_panel(s, shard=(rank, 3))
        prep = prepare_pool(s, panel, shard=(rank, 3))
        assert prep.sharded and prep.skipped == whole.skipped == {"5.0": 4}
        assert all(member_row(m) == rows[m.series.id] for m in prep.members)
        own = prep.ids
        owned += own
        extra = {panel.ids[0], whole.ids[0]} | (
            {"5.0"} if rank == 0 else set()
        )  # checked by rank 0
        assert {x.id for x in panel.series} == set(own) | extra  # nothing else is held
        mine = sum(panel.lengths[k] for k in set(own) | extra)
        assert mine <= panel.held <= mine + outline.CHUNK_ROWS < total  # the measured peak
    assert sorted(owned) == sorted(whole.ids)


def failures_of(monkeypatch, s: TrainSettings, ranks: int) -> list:
    """Each rank's `first_failure` argument, its `load_panel` stopped there."""

    class Stop(Exception):
        pass

    got: list = []

    def record(failure):
        got.append(failure)
        raise Stop

    with monkeypatch.context() as m:
        m.setattr(pool.distributed, "first_failure", record)
        for rank in range(ranks):
            with pytest.raises(Stop):
                load_panel(s, shard=(rank, ranks))
    return got


def on_every_rank(monkeypatch, failures: list) -> str | None:
    """`first_failure` as each rank runs it, its all-gather handing over every rank's failure:
    the message every rank raises (the same on all), or None."""
    messages = set()
    monkeypatch.setattr(distributed, "active", lambda: True)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: len(failures))

    def gather(out, obj):
        out[:] = failures

    monkeypatch.setattr(distributed.dist, "all_gather_object", gather)
    for mine in failures:
        try:
            distributed.first_failure(mine)
            messages.add(None)
        except UserError as err:
            messages.add(str(err))
    assert len(messages) == 1
    return messages.pop()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize(
    "bad",
    ["price gap in a later rank's series", "cells in two ranks' series", "a skipped series",
     "time goes back"],
)  # fmt: skip
def test_bad_data_stops_every_rank_with_the_one_process_line(tmp_path, monkeypatch, suffix, bad):
    frame = long_frame().astype({"price": object, "sales": object, "day": str})
    starts = np.cumsum([0, *LENGTHS])
    if bad == "price gap in a later rank's series":
        frame.loc[starts[5] + 3, "price"] = ""
    elif bad == "cells in two ranks' series":  # the first in the file wins, whoever holds it
        frame.loc[starts[6] + 1, "sales"] = "x"
        frame.loc[starts[1] + 2, "sales"] = "y"
    elif bad == "a skipped series":  # series 5.0 is too short; one process still refuses it
        frame.loc[starts[4] + 1, "sales"] = "z"
    elif bad == "time goes back":
        frame.loc[starts[3] + 4, "day"] = frame.loc[starts[3], "day"]
    write(frame.astype(str).replace({"<NA>": ""}), tmp_path / f"bad{suffix}")
    s = settings(tmp_path / f"bad{suffix}", past_covariates=["price"])
    with pytest.raises(UserError) as one:
        load_panel(s)
    failures = failures_of(monkeypatch, s, 3)
    assert sum(f is not None for f in failures) >= 1  # some rank never saw the bad cell
    assert on_every_rank(monkeypatch, failures) == str(one.value)


def test_a_series_that_cannot_be_prepared_stops_every_rank_alike(tmp_path, monkeypatch):
    """Preparing fails on the ranks holding series 4.0 and 7.0 (made to fail here): every rank
    raises 4.0's line, the one a single process meets first."""
    write(long_frame(), tmp_path / "d.csv")
    s = settings(tmp_path / "d.csv")
    real = pool.prepare

    def prepare(s, series, *given):
        if series.id in ("4.0", "7.0"):
            raise UserError(f"series {series.id} cannot be prepared")
        return real(s, series, *given)

    monkeypatch.setattr(pool, "prepare", prepare)
    with pytest.raises(UserError, match="series 4.0 cannot") as one:
        prepare_pool(s, load_panel(s))
    panels = [load_panel(s, shard=(r, 3)) for r in range(3)]  # read fine
    failures: list = []
    with monkeypatch.context() as m:
        m.setattr(pool.distributed, "first_failure", failures.append)
        for r, panel in enumerate(panels):
            prepare_pool(s, panel, shard=(r, 3))
    assert len(failures) == 3 and sorted(f[1] for f in failures if f) == [
        "series 4.0 cannot be prepared", "series 7.0 cannot be prepared"]  # fmt: skip
    assert on_every_rank(monkeypatch, failures) == str(one.value)


def test_files_read_whole_keep_the_one_process_errors(tmp_path, monkeypatch):
    long_frame().to_csv(tmp_path / "d.csv", index=False)
    for kw in [dict(id="store"), dict(past_covariates=["cost"]), dict(time="when")]:
        s = settings(tmp_path / "d.csv", **kw)
        with pytest.raises(UserError) as one:
            load_panel(s)
        with pytest.raises(UserError) as sharded:
            load_panel(s, shard=(1, 2))
        assert str(sharded.value) == str(one.value)
    text = (tmp_path / "d.csv").read_text().splitlines()
    text[30] += ",surplus"  # a row with a field too many: pandas refuses the file
    (tmp_path / "r.csv").write_text("\n".join(text) + "\n")
    s = settings(tmp_path / "r.csv")
    with pytest.raises(UserError, match="cannot read .* as CSV") as one:
        load_panel(s)
    failures = failures_of(monkeypatch, s, 2)
    assert all(f is not None and f[0] == -1 for f in failures)
    assert on_every_rank(monkeypatch, failures) == str(one.value)
