"""Many series in one file: long (an id column), wide (several target columns), or one series.

    long   unique_id  ds        y          wide   month    A    B    C
           A          2020-01   3.1               2020-01  3.1  7.0  0.4
           A          2020-02   3.4               2020-02  3.4  7.2  0.5
           B          2020-01   7.0
           ...

`read_panel(path, target, time, id, fill, covariates)` gives a `Panel`: one `Series` per id, in the
order the ids first appear (long) or the columns are named (`--target A,B,C`, wide). Nixtla's
names `unique_id, ds, y` are recognized without flags (target "y", no `--id`): the id and time
columns. Each series is read as `data.read_series` reads one (its own time column, strictly
increasing within the series, its own gaps filled); covariate columns are read beside the target
and may have no gaps. CSV or Parquet (by its magic bytes). Errors name the series.

Under torchrun a rank reads only some series' rows (`outline.py`: the ids and lengths first, then
its own rows); its `Panel` then holds those series, and `ids` / `lengths` still cover the file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from lstmbyhand.errors import UserError
from lstmbyhand.forecast.data import Series, listed, read_data, read_table, series_from_table

if TYPE_CHECKING:  # pandas is imported by what reads a file (data.py), not by a run's own series
    import pandas as pd

NIXTLA = ("unique_id", "ds", "y")  # neuralforecast's / statsforecast's long format


class Reading(NamedTuple):
    """What is read from a file, `read_panel`'s arguments after the path: `outline` takes them
    as one (pool.py passes the same to both)."""

    target: str
    time: str | None = None
    id: str | None = None
    fill: str = "none"
    covariates: tuple[str, ...] = ()
    column_hint: str | None = None


@dataclass
class Panel:
    """The series of one file: `series[k].id` names each; `layout` single, long or wide."""

    series: list[Series]
    layout: str  # "single" (one series, as before), "long" (id column), "wide" (target columns)
    id_column: str | None  # long: the id column
    path: str
    sha256: str
    order: list[str] | None = None  # every series' id in the file's order, when `series` holds
    counts: dict[str, int] | None = None  # only some (outline.py); their lengths. None: all held
    held: int = 0  # the file's rows held at once at the peak of reading it

    @property
    def ids(self) -> list[str]:
        """Every series' id, in the file's order (those not held too)."""
        return list(self.order) if self.order is not None else [s.id for s in self.series]

    @property
    def lengths(self) -> dict[str, int]:
        """Every series' length (values after --fill), by id, in the file's order."""
        if self.counts is not None:
            return dict(self.counts)
        return {s.id: len(s) for s in self.series}

    @property
    def partial(self) -> bool:
        """True when `series` holds only some of the file's series (a rank's, outline.py)."""
        return self.order is not None

    def __len__(self) -> int:
        return len(self.ids)


def resolve_columns(columns: list[str], target: str, time: str | None, id: str | None):
    """(target, time, id) with Nixtla's names filled in: a file with unique_id, ds and y, read with
    target "y" and no id, is long data with id unique_id and time ds."""
    if id is None and target == "y" and set(NIXTLA) <= set(columns):
        return target, (time if time is not None else "ds"), "unique_id"
    return target, time, id


def read_panel(
    path: str | Path,
    target: str,
    time: str | None = None,
    id: str | None = None,
    fill: str = "none",
    covariates: tuple[str, ...] = (),
    column_hint: str | None = None,
) -> Panel:
    """Every series in the file (see the module docstring)."""
    data = read_data(path)
    table = read_table(path, data)
    digest = hashlib.sha256(data).hexdigest()
    columns = list(table.columns)
    target, time, id, targets = check_columns(columns, path, target, time, id, covariates,
                                              column_hint)  # fmt: skip
    if id is None:  # one series, or several side by side sharing the time column
        rest = [c for c in columns if c not in targets[1:]]  # the time is not another target
        single = len(targets) == 1
        series = [one_wide(table, path, digest, t, time, fill, column_hint, covariates, rest,
                           single) for t in targets]  # fmt: skip
        layout = "single" if single else "wide"
        return Panel(series, layout, None, str(path), digest, held=len(table))
    rest = [c for c in columns if c != id]
    series = [
        one_long(frame, key, path, digest, target, time, fill, column_hint, covariates, rest)
        for key, frame in long_groups(table, id)
    ]
    require_time(series[0] if series else None, time, path, columns)
    return Panel(series, "long", id, str(path), digest, held=len(table))


def check_columns(
    columns: list[str],
    path: str | Path,
    target: str,
    time: str | None,
    id: str | None,
    covariates: tuple[str, ...],
    column_hint: str | None,
) -> tuple[str, str | None, str | None, list[str]]:
    """(target, time, id, the target columns) resolved against the file's columns, or the
    `UserError` naming a missing id or covariate column, a column given twice, or --id with
    several targets."""
    target, time, id = resolve_columns(columns, target, time, id)
    targets = [target] if target in columns or "," not in target else _split(target)
    for name, flag in [(id, "--id"), *((c, "--past/--future-covariates") for c in covariates)]:
        if name is not None and name not in columns:
            raise UserError(
                f"no column {name!r} in {path}; the columns are: {', '.join(map(repr, columns))}; "
                + (column_hint or f"pass one of them with {flag}")
            )
    clash = sorted({*targets, time} & {id, *covariates} - {None})
    if clash:
        raise UserError(f"column {clash[0]!r} is given twice (as target, time, id or covariate)")
    if id is not None and len(targets) > 1:
        raise UserError(
            f"--id {id} (long data) takes one --target column, got {len(targets)}; "
            "for wide data (one column per series) leave --id out"
        )
    return target, time, id, targets


def long_groups(table: pd.DataFrame, id: str):
    """(id, rows) of long data, in the order the ids first appear; the rows keep their index."""
    return table.groupby(table[id].astype(str).str.strip(), sort=False)


def one_long(frame, key, path, digest, target, time, fill, column_hint, covariates, rest) -> Series:
    """Series `key` of long data from its rows; its errors name it."""
    try:
        one = series_from_table(frame, path, digest, target, time, fill, column_hint,
                                covariates, rest)  # fmt: skip
    except UserError as err:
        raise UserError(f"series {key!r} (rows counted within it): {err}") from None
    return _named(one, str(key))


def one_wide(table, path, digest, t, time, fill, column_hint, covariates, rest, single) -> Series:
    """Target column `t` of wide data (or the file's one series) as a series."""
    one = series_from_table(table, path, digest, t, time, fill, column_hint, covariates, rest)
    return _named(one, "" if single else t)


def require_time(first: Series | None, time: str | None, path, columns: list[str]) -> None:
    """Long data needs a time column to order each series: its first series must have one."""
    if first is not None and first.time_column is None and time != "":
        raise UserError(
            f"long data needs a time column to order each series: pass --time COL ({path} has "
            f"{', '.join(map(repr, columns))})"
        )


def _named(series: Series, name: str) -> Series:
    series.id = name
    return series


def _split(target: str) -> list[str]:
    names = [t.strip() for t in target.split(",")]
    if "" in names or len(set(names)) < len(names):
        raise UserError(f"--target {target!r}: expected distinct column names separated by commas")
    return names


def read_future(
    path: str | Path, id_column: str | None, time_column: str | None, columns: list[str]
) -> dict[str, tuple[object, np.ndarray]]:
    """A file of known-future covariates: series id -> (its time stamps or None, (S, C) values),
    the rows in file order. Its columns: the run's id column (long data), its time column (when it
    has one) and the future covariates; no gaps."""
    import pandas as pd

    from lstmbyhand.forecast.data import parse_covariates, parse_time

    table = read_table(path)
    need = [c for c in (id_column, *columns) if c]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise UserError(
            f"no column {missing[0]!r} in {path}; the columns are: {listed(table)}; the future "
            f"covariates file needs {', '.join(map(repr, need))}"
            + (f" and the time column {time_column!r}" if time_column else "")
        )
    keys = table[id_column].astype(str).str.strip() if id_column else pd.Series([""] * len(table))
    out: dict[str, tuple[object, np.ndarray]] = {}
    for key, frame in table.groupby(keys.to_numpy(), sort=False):
        stamps = None
        if time_column and time_column in frame.columns:
            stamps = parse_time(frame[time_column], time_column, strict=True)
        out[str(key)] = (stamps, parse_covariates(frame, tuple(columns)))
    return out
