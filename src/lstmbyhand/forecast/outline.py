"""A many-series file read in two passes, so that a rank holds only its own series' rows.

    plan = outline(path, Reading(target, time, id, fill, covariates))  # pass 1: ids, lengths
    panel, failure = read_part(plan, {"A", "C"})                # pass 2: those series only

Pass 1 streams the file in chunks of CHUNK_ROWS rows and keeps, per series, only its length (the
rows; with --fill drop the target's non-missing cells), in the file's order: what decides which
series are too short, the assignment and the season on every rank alike (pool.py). It reads the id
column (long data; with --fill drop the target too) or nothing but a row count (wide data; with
--fill drop the targets). The SHA-256 of the file is streamed too.

Pass 2 reads only the asked series' rows (long: CSV in chunks, keeping the rows whose id is asked;
Parquet row group by row group, only the groups pass 1 saw the ids in, the rows filtered in Arrow
before they become text) or columns (wide: the asked target columns), and only the columns a series
is made of (id, target, time, covariates). Each series is then made exactly as `read_panel` makes
it (`panel.one_long`, `one_wide`), from the same text cells with the same row index: a CSV's cells
are pandas' own, chunk by chunk; a Parquet subset is turned to text with "witness" values of the
whole column appended (a missing cell if the column has one anywhere, the first non-midnight or
finer-than-a-second time), because pandas chooses a column's text form from the whole column
(integers with a gap read as floats, times with a time of day or fractions everywhere).

`read_part` returns the first series it cannot make (its position in the file and its one-line
message) instead of raising: a rank cannot see another rank's rows, so the caller all-gathers the
failures and every rank raises the one a single process would meet first (`distributed.first_failure`).
`outline` returns None -- read the file whole with `read_panel` -- for one series, a pipe or an
empty file, a missing or doubled column name, or a file pass 1 cannot read: `read_panel`'s error is
then the one-process error, on every rank.
"""

from __future__ import annotations

import csv
import hashlib
import io
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lstmbyhand.errors import UserError
from lstmbyhand.forecast.data import MISSING_TOKENS, _cells, read_table
from lstmbyhand.forecast.panel import (
    Panel,
    Reading,
    check_columns,
    long_groups,
    one_long,
    one_wide,
    require_time,
)

CHUNK_ROWS = 1 << 17  # rows of the file streamed at a time (a CSV chunk, a Parquet batch)
CSV_OPTIONS: dict[str, Any] = dict(dtype=str, keep_default_na=False, skipinitialspace=True)


@dataclass
class Outline:
    """Pass 1 of a file: every series' id and length, and what pass 2 needs to read it."""

    path: str
    layout: str  # "long" or "wide"
    id_column: str | None
    target: str
    targets: list[str]  # wide: the target columns, one series each; long: [target]
    time: str | None
    fill: str
    covariates: tuple[str, ...]
    column_hint: str | None
    columns: list[str]  # every column of the file, in order
    raw: dict[str, str]  # column -> its name as the reader spells it (a CSV header's spaces)
    rest: list[str]  # the columns that may hold the time (`read_panel`'s)
    lengths: dict[str, int]  # id -> length, in the file's order
    sha256: str
    rows: int
    parquet: bool
    groups: dict[str, set[int]] = field(default_factory=dict)  # Parquet long: id -> row groups
    witness: dict[str, Any] = field(default_factory=dict)  # Parquet long: column -> pa.Array

    @property
    def ids(self) -> list[str]:
        return list(self.lengths)

    def needed(self, targets: list[str]) -> list[str]:
        """The columns series of `targets` are made of, in the file's order."""
        time = self.time if self.time else (self.rest[0] if self.time is None else None)
        want = {self.id_column, *targets, time, *self.covariates} - {None}
        return [c for c in self.columns if c in want]


def outline(path: str | Path, reading: Reading) -> Outline | None:
    """Pass 1 (see the module docstring) of what `read_panel(path, *reading)` reads; None: read
    the file whole with `read_panel`."""
    import pyarrow as pa

    target, time, id, fill, covariates, column_hint = reading

    p = Path(path)
    try:
        if not stat.S_ISREG(p.stat().st_mode) or p.stat().st_size == 0:
            return None
        parquet = _is_parquet(p)
        columns, raw = _parquet_columns(p) if parquet else _csv_columns(p)
        if columns is None or len(set(columns)) < len(columns):
            return None
        try:
            target, time, id, targets = check_columns(columns, p, target, time, id,
                                                      covariates, column_hint)  # fmt: skip
        except UserError:
            return None
        if id is None and len(targets) == 1:  # one series: nothing to share out
            return None
        if any(c not in columns for c in targets) or (time and time not in columns):
            return None  # read_panel names the missing column (after any earlier series' error)
        if id is not None:
            rest = [c for c in columns if c != id]
        else:
            rest = [c for c in columns if c not in targets[1:]]
        plan = Outline(str(path), "long" if id else "wide", id, target, targets, time, fill,
                       covariates, column_hint, columns, raw, rest, {}, _sha256(p), 0,
                       parquet)  # fmt: skip
        (_scan_parquet if parquet else _scan_csv)(plan)
    except (OSError, ValueError, csv.Error, pa.ArrowException):
        return None  # read_panel says what is wrong, as one process does
    return plan if plan.rows else None


def read_part(plan: Outline, ids: set[str]) -> tuple[Panel, tuple[int, str] | None]:
    """Pass 2: the series `ids` (a `Panel` holding those, in the file's order; its `ids` and
    `lengths` those of the whole file), and the first of them that cannot be made: (its position
    among the file's series, its one-line message), or None. A file that cannot be read is
    position -1 with `read_table`'s message."""
    import pyarrow as pa

    position = {k: i for i, k in enumerate(plan.ids)}
    targets = plan.targets if plan.layout == "long" else [t for t in plan.targets if t in ids]
    try:
        if plan.parquet:
            table, held = _parquet_part(plan, ids, plan.needed(targets))
        else:
            table, held = _csv_part(plan, ids, plan.needed(targets))
    except (OSError, ValueError, csv.Error, pa.ArrowException) as err:
        return _empty(plan, 0), (-1, _read_error(plan, err))
    series, failure = [], None
    try:
        if plan.layout == "long":
            assert plan.id_column is not None
            for key, frame in long_groups(table, plan.id_column):
                failure = (position[str(key)], "")
                series.append(one_long(frame, key, plan.path, plan.sha256, plan.target,
                                       plan.time, plan.fill, plan.column_hint, plan.covariates,
                                       plan.rest))  # fmt: skip
        else:
            for t in targets:
                failure = (position[t], "")
                series.append(one_wide(table, plan.path, plan.sha256, t, plan.time, plan.fill,
                                       plan.column_hint, plan.covariates, plan.rest, False))  # fmt: skip
        failure = None
    except UserError as err:
        failure = (failure[0] if failure else -1, str(err))
    panel = Panel(series, plan.layout, plan.id_column, plan.path, plan.sha256, plan.ids,
                  plan.lengths, held)  # fmt: skip
    if failure is None:
        got = {x.id: len(x) for x in series}
        if set(got) != set(ids) or any(got[k] != plan.lengths[k] for k in got):
            raise RuntimeError(f"pass 2 of {plan.path} disagrees with pass 1; this is a bug")
    return panel, failure


def require_first_time(panel: Panel, plan: Outline) -> None:
    """`read_panel`'s check that long data has a time column (on its first series, which every
    rank holds); a no-op for wide data."""
    if plan.layout == "long":
        first = next(x for x in panel.series if x.id == plan.ids[0])
        require_time(first, plan.time, plan.path, plan.columns)


def _empty(plan: Outline, held: int) -> Panel:
    return Panel([], plan.layout, plan.id_column, plan.path, plan.sha256, plan.ids, plan.lengths,
                 held)  # fmt: skip


def _read_error(plan: Outline, err: Exception) -> str:
    """The one-process message for a file pass 2 could not read (`read_table`'s)."""
    try:
        read_table(plan.path)
    except UserError as real:
        return str(real)
    kind = "Parquet" if plan.parquet else "CSV"
    return f"cannot read {plan.path} as {kind} ({str(err).strip().splitlines()[0]})"


def _is_parquet(p: Path) -> bool:
    """`data.is_parquet` on the file's first and last four bytes."""
    with open(p, "rb") as f:
        head = f.read(4)
        f.seek(max(p.stat().st_size - 4, 0))
        return head == b"PAR1" and f.read(4) == b"PAR1"


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _csv_columns(p: Path) -> tuple[list[str] | None, dict[str, str]]:
    """The header's column names as `read_table` gives them, and their spelling in the file;
    None if a name is doubled (read_table refuses it)."""
    with open(p, "rb") as f:
        first = f.readline().decode("utf-8-sig").split("\n", 1)[0]
    names = [str(c).strip() for c in next(csv.reader(io.StringIO(first)), [])]
    if len(set(names)) < len(names):
        return None, {}
    header = pd.read_csv(p, nrows=0, **CSV_OPTIONS).columns
    columns = [str(c).strip() for c in header]
    return columns, dict(zip(columns, map(str, header), strict=True))


def _scan_csv(plan: Outline) -> None:
    """Pass 1 of a CSV: lengths per id (long) or per target (wide), chunk by chunk."""
    drop = plan.fill == "drop"
    if plan.layout == "long":
        assert plan.id_column is not None
        read = [plan.id_column, *([plan.target] if drop else [])]
    else:
        read = plan.targets if drop else plan.targets[:1]
    lengths: dict[str, int] = {}
    usecols = [plan.raw[c] for c in read]
    for chunk in pd.read_csv(plan.path, usecols=usecols, chunksize=CHUNK_ROWS, **CSV_OPTIONS):
        chunk.columns = [str(c).strip() for c in chunk.columns]
        plan.rows += len(chunk)
        if plan.layout == "long":
            keys = chunk[plan.id_column].astype(str).str.strip().to_numpy()
            present = _present(chunk[plan.target]) if drop else np.ones(len(chunk), np.int64)
            _add(lengths, keys, present)
        else:
            for t in plan.targets:
                n = int(_present(chunk[t]).sum()) if drop else len(chunk)
                lengths[t] = lengths.get(t, 0) + n
    plan.lengths = lengths


def _present(cells: pd.Series) -> np.ndarray:
    """1 where a cell holds a value, 0 where it is missing (`data.parse_numbers`' test)."""
    text = cells.astype(str).str.strip().str.lower()
    return (~text.isin(MISSING_TOKENS)).to_numpy().astype(np.int64)


def _add(lengths: dict[str, int], keys: np.ndarray, counts: np.ndarray) -> None:
    """lengths[k] += the counts of rows with key k, new keys in the order they appear."""
    sums = pd.Series(counts).groupby(keys, sort=False).sum()
    for k, n in zip(sums.index, sums.to_numpy(), strict=True):
        lengths[k] = lengths.get(k, 0) + int(n)


def _csv_part(plan: Outline, ids: set[str], needed: list[str]) -> tuple[pd.DataFrame, int]:
    """The CSV's rows of `ids` (long) or all rows (wide), columns `needed`, read chunk by chunk
    with every column (the same parser and errors as `read_table`); the rows keep their index."""
    pieces, kept, held = [], 0, 0
    for chunk in pd.read_csv(plan.path, chunksize=CHUNK_ROWS, **CSV_OPTIONS):
        chunk.columns = [str(c).strip() for c in chunk.columns]
        piece = chunk[needed]
        if plan.layout == "long":
            keys = chunk[plan.id_column].astype(str).str.strip()
            piece = piece[keys.isin(ids).to_numpy()]
        held = max(held, kept + len(chunk))
        if len(piece):
            pieces.append(piece.copy())  # not a view of the chunk: the chunk is let go
            kept += len(piece)
    table = pd.concat(pieces) if pieces else pd.DataFrame(columns=needed)
    return table, max(held, kept)


def _parquet_columns(p: Path) -> tuple[list[str] | None, dict[str, str]]:
    """The columns `pd.read_parquet` gives (not the index columns pandas stored), stripped as
    `data.read_parquet` strips them, and their Arrow field names; None for a layout read whole
    (a stored index column, several column levels, nested columns)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(p)
    meta = schema.pandas_metadata or {}
    if any(not isinstance(i, dict) for i in meta.get("index_columns", [])):
        return None, {}  # the rows' index comes from a column: read it whole
    labels = schema.empty_table().to_pandas().columns
    if labels.nlevels > 1 or len(labels) != len(schema.names):
        return None, {}
    if any(pa.types.is_nested(f.type) for f in schema):
        return None, {}
    columns = [str(c).strip() for c in labels]
    return columns, dict(zip(columns, schema.names, strict=True))


def _scan_parquet(plan: Outline) -> None:
    """Pass 1 of a Parquet file: lengths per id and the row groups each id is in (long), or per
    target (wide); for long data the witnesses of every column a series is made of."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(plan.path)
    plan.rows = pf.metadata.num_rows
    drop = plan.fill == "drop"
    if plan.layout == "wide":
        plan.lengths = {t: 0 if drop else plan.rows for t in plan.targets}
        columns = [plan.raw[t] for t in plan.targets] if drop else []
        for batch in pf.iter_batches(CHUNK_ROWS, columns=columns) if columns else []:
            for t in plan.targets:
                plan.lengths[t] += int(_present(_texts(batch, plan.raw[t], pf)).sum())
        return
    assert plan.id_column is not None
    schema = pf.schema_arrow
    needed = plan.needed(plan.targets)
    if _timestamp(schema.field(plan.raw[plan.id_column]).type):
        raise ValueError("time stamps as ids: read whole")
    nulls = {c: _has_nulls(pf, plan.raw[c]) for c in needed}
    plan.witness = {c: pa.nulls(1, schema.field(plan.raw[c]).type) for c in needed if nulls[c]}
    stamps = [c for c in needed if _timestamp(schema.field(plan.raw[c]).type)]
    read = list(dict.fromkeys([plan.id_column, *([plan.target] if drop else []), *stamps]))
    found: dict[str, dict[str, Any]] = {c: {} for c in stamps}
    for g in range(pf.num_row_groups):
        columns = [plan.raw[c] for c in read]
        for batch in pf.iter_batches(CHUNK_ROWS, row_groups=[g], columns=columns):
            keys = _arrow_keys(batch, plan, pf)
            ones = np.ones(len(keys), np.int64)
            _add(
                plan.lengths,
                keys,
                _present(_texts(batch, plan.raw[plan.target], pf)) if drop else ones,
            )
            for k in pd.unique(keys):
                plan.groups.setdefault(k, set()).add(g)
            for c in stamps:
                _find_witnesses(batch.column(plan.raw[c]), found[c])
    for c in stamps:  # pandas' text form of a time column depends on these
        extra = list(found[c].values())
        if extra:
            plan.witness[c] = pa.concat_arrays(
                [*([plan.witness[c]] if c in plan.witness else []), *extra]
            )


def _timestamp(kind) -> bool:
    import pyarrow as pa

    return pa.types.is_timestamp(kind)


def _has_nulls(pf, name: str) -> bool:
    """Whether column `name` has a missing cell anywhere: from the row groups' statistics, or
    (when a group has none) by reading that column alone, batch by batch."""
    md = pf.metadata
    leaf = [md.schema.column(j).path for j in range(md.num_columns)].index(name)
    known = True
    for g in range(md.num_row_groups):
        st = md.row_group(g).column(leaf).statistics
        if st is None or not st.has_null_count:
            known = False
            break
        if st.null_count:
            return True
    if known:
        return False
    return any(b.column(0).null_count for b in pf.iter_batches(CHUNK_ROWS, columns=[name]))


def _find_witnesses(column, found: dict[str, Any]) -> None:
    """The first time stamp of each kind pandas' text form depends on (not at midnight; with
    milli-, micro-, nanoseconds), kept in `found` (kind -> a one-value array) once seen."""
    import pyarrow as pa
    import pyarrow.compute as pc

    per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[column.type.unit]
    ticks = pc.fill_null(column.cast(pa.int64()), 0).to_numpy()  # (B,)
    kinds = {"time of day": 86_400 * per_second, "fraction": per_second}
    if per_second >= 10**6:
        kinds["below a millisecond"] = per_second // 10**3
    if per_second == 10**9:
        kinds["below a microsecond"] = 10**3
    for kind, unit in kinds.items():
        if kind in found:
            continue
        hit = np.flatnonzero(ticks % unit)
        if len(hit):
            found[kind] = column.slice(int(hit[0]), 1)


def _texts(batch, name: str, pf, witness=None) -> pd.Series:
    """Column `name` of an Arrow batch as `data.read_parquet` turns the whole file's to text (the
    witnesses appended for pandas' choice of form, then dropped)."""
    import pyarrow as pa

    column = batch.column(name)
    n = len(column)
    schema = pf.schema_arrow
    kind = schema.field(name)
    if witness is not None and not pa.types.is_dictionary(kind.type):
        column = pa.concat_arrays([column, witness])
    table = pa.Table.from_arrays([column], schema=pa.schema([kind], metadata=schema.metadata))
    return _cells(table.to_pandas().iloc[:, 0]).iloc[:n].reset_index(drop=True)


def _arrow_keys(batch, plan: Outline, pf) -> np.ndarray:
    """Each row's series id, as `panel.long_groups` keys the whole file's rows: (B,) str. Made
    from the batch's distinct ids (dictionary-encoded), each turned to text once."""
    import pyarrow as pa
    import pyarrow.compute as pc

    assert plan.id_column is not None
    name = plan.raw[plan.id_column]
    column = batch.column(name)
    if pa.types.is_dictionary(column.type):
        codes, values = column.indices, column.dictionary
        kind = pa.field(name, values.type)
        witness, meta = None, None  # categories keep their own type: no witness
    else:
        encoded = pc.dictionary_encode(column)
        codes, values = encoded.indices, encoded.dictionary
        kind, witness, meta = pf.schema_arrow.field(name), plan.witness.get(plan.id_column), True
    if witness is not None:
        values = pa.concat_arrays([values, witness])
    schema = pa.schema([kind], metadata=pf.schema_arrow.metadata if meta else None)
    table = pa.Table.from_arrays([values], schema=schema)
    text = _cells(table.to_pandas().iloc[:, 0]).astype(str).str.strip().to_numpy()
    text = np.append(text[: len(values) - (len(witness) if witness is not None else 0)], "")
    at = pc.fill_null(codes, -1).to_numpy()  # (B,) -1: a missing id, read as ""
    return text[at].astype(object)


def _parquet_part(plan: Outline, ids: set[str], needed: list[str]) -> tuple[pd.DataFrame, int]:
    """The Parquet file's rows of `ids` (long: only the row groups they are in, filtered before
    they become text) or its columns `needed` (wide: every row), each column's text as the whole
    file's; the rows keep `pd.read_parquet`'s index."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(plan.path)
    start, step = _range_index(pf)
    raw = [plan.raw[c] for c in needed]
    if plan.layout == "wide":  # whole columns: pandas converts each as in the whole file
        frame = pf.read(columns=raw)
        cells = {c: _texts(frame, plan.raw[c], pf).to_numpy() for c in needed}
        return pd.DataFrame(cells, index=start + step * np.arange(plan.rows)), plan.rows
    first = np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)])
    groups = sorted(set().union(*(plan.groups[k] for k in ids)))
    pieces, kept, held = [], 0, 0
    for g in groups:
        row = int(first[g])
        for batch in pf.iter_batches(CHUNK_ROWS, row_groups=[g], columns=raw):
            mask = pd.Series(_arrow_keys(batch, plan, pf)).isin(ids).to_numpy()  # (B,)
            held = max(held, kept + batch.num_rows)
            if mask.any():
                part = batch.filter(pa.array(mask))
                cells = {c: _texts(part, plan.raw[c], pf, plan.witness.get(c)).to_numpy()
                         for c in needed}  # fmt: skip
                at = row + np.flatnonzero(mask)
                pieces.append(pd.DataFrame(cells, index=start + step * at))
                kept += len(at)
            row += batch.num_rows
    table = pd.concat(pieces) if pieces else pd.DataFrame(columns=needed)
    return table, max(held, kept)


def _range_index(pf) -> tuple[int, int]:
    """(start, step) of the RangeIndex pandas stored (the index `pd.read_parquet` gives)."""
    meta = pf.schema_arrow.pandas_metadata or {}
    for i in meta.get("index_columns", []):
        if isinstance(i, dict) and i.get("kind") == "range":
            return int(i.get("start", 0)), int(i.get("step", 1))
    return 0, 1
