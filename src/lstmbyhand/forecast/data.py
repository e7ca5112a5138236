"""From a CSV or Parquet file to one validated series, with its time stamps.

    series = read_series("airline.csv", target="passengers", time="month", fill="none")
    series.values      # (N,) float64, the target column
    series.time        # (N,) the time column (DatetimeIndex, or numbers), or None
    series.freq        # e.g. "MS" (month start) or 1 (numbers counting up by one), or None

Every problem with the file is a `UserError` (a `ValueError`) that names the problem and the fix:
the CLI prints it as one line. Many series in one file are `panel.py`'s; windows and scalers
live in `windows.py` and `scaling.py`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lstmbyhand.errors import UserError
from lstmbyhand.forecast.config import FILL_METHODS

if TYPE_CHECKING:  # pandas is imported where a file is read: a run's stored series need none
    import pandas as pd

LARGEST = 1e150  # |values| beyond: squares (losses, RMSE, the scaler's spread) overflow float64
SMALLEST = 1e-150  # nonzero |values| below: their squares underflow to 0 (RMSE 0 for any model)
MISSING_TOKENS = frozenset({"", "na", "nan", "n/a", "null", "none", "-", "?"})

# pandas frequency prefix -> the usual season length (observations per cycle)
SEASON_OF_FREQ = {"H": 24, "h": 24, "D": 7, "B": 5, "W": 52, "M": 12, "MS": 12, "ME": 12, "Q": 4}
SEASON_OF_FREQ.update({"QS": 4, "QE": 4, "BM": 12, "BMS": 12, "BME": 12})


@dataclass
class Series:
    """One target column, cleaned: values (N,) float64, optional time (N,), inferred frequency."""

    values: np.ndarray  # (N,)
    time: pd.DatetimeIndex | np.ndarray | None  # (N,); kept by a run (parsed.py): datetime64[ns]
    freq: str | float | None  # pandas offset alias for dates, the constant step for numbers
    path: str
    target: str
    time_column: str | None
    sha256: str = ""  # of the file's bytes as read (a pipe cannot be read twice)
    id: str = ""  # the series' id among many (panel.py); "" for a file of one series
    covariates: np.ndarray | None = None  # (N, C) raw covariate columns (panel.py), or None

    def __len__(self) -> int:
        return len(self.values)

    @property
    def season(self) -> int:
        """The season length its frequency suggests (12 for monthly data), or 0 when unknown."""
        if not isinstance(self.freq, str):
            return 0
        base = self.freq.split("-")[0].lstrip("0123456789")
        return SEASON_OF_FREQ.get(base, 0)


def read_data(path: str | Path) -> bytes:
    """The file's bytes, read once (pipes and /dev/stdin too), or a `UserError` saying why not."""
    p = Path(path)
    try:
        mode = _mode(p)
        data = p.read_bytes()
    except OSError as err:
        raise _unreadable(p, err) from None
    if not data:
        raise _empty(p, mode)
    return data


def readable(path: str | Path) -> None:
    """The `UserError` `read_data` would raise for a missing, unreadable, directory or empty
    file, without reading it (a pipe or device is not opened: it could be read only once)."""
    p = Path(path)
    try:
        mode = _mode(p)
        if stat.S_ISREG(mode):
            with open(p, "rb") as f:
                if not f.read(1):
                    raise _empty(p, mode)
    except OSError as err:
        raise _unreadable(p, err) from None


def _mode(p: Path) -> int:
    mode = os.stat(p).st_mode
    if stat.S_ISDIR(mode):
        raise UserError(f"{p} is a directory, not a CSV file; pass the CSV file inside it")
    return mode


def _unreadable(p: Path, err: OSError) -> UserError:
    if isinstance(err, FileNotFoundError):
        return UserError(f"no such file: {p}; check the path")
    if isinstance(err, PermissionError):
        return UserError(f"cannot read {p}: permission denied; check the file's permissions")
    return UserError(f"cannot read {p} ({err.strerror}); check the path")


def _empty(p: Path, mode: int) -> UserError:
    kind = "is empty" if stat.S_ISREG(mode) else "gave no data (a pipe or device read to its end)"
    return UserError(f"{p} {kind}; expected a CSV file with a header row and data rows")


def is_parquet(path: str | Path, data: bytes) -> bool:
    """A Parquet file: its magic bytes (PAR1 at both ends), whatever the name."""
    return data[:4] == b"PAR1" and data[-4:] == b"PAR1"


def read_parquet(path: str | Path, data: bytes) -> pd.DataFrame:
    """A Parquet file's columns as text cells, as `read_table` gives a CSV's (missing: "")."""
    import pandas as pd

    try:
        frame = pd.read_parquet(io.BytesIO(data))
    except (OSError, ValueError, ImportError) as err:
        raise UserError(f"cannot read {path} as Parquet ({str(err).splitlines()[0]})") from None
    if len(frame.columns) == 0 or len(frame) == 0:
        raise UserError(f"{path} has no data rows; expected named columns and at least one row")
    table = pd.DataFrame({str(c).strip(): _cells(frame[c]) for c in frame.columns})
    if len(table.columns) < len(frame.columns):
        raise UserError(f"{path} has a column name more than once; rename the columns")
    return table


def _cells(column: pd.Series) -> pd.Series:
    """One column as text, missing values as "" (times in ISO form)."""
    text = column.astype(str)
    return text.where(column.notna().to_numpy(), "")


def column_names(path: str | Path) -> list[str]:
    """The file's column names from its header (CSV) or schema (Parquet); [] if unreadable."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            if head == b"PAR1":
                import pyarrow.parquet as pq

                return [str(n) for n in pq.read_schema(path).names]
            first = (head + f.readline()).decode("utf-8-sig")
    except (OSError, UnicodeDecodeError, ValueError):
        return []
    return [c.strip() for c in next(csv.reader(io.StringIO(first)), [])]


def read_table(path: str | Path, data: bytes | None = None) -> pd.DataFrame:
    """Read a CSV (or Parquet) file as text cells (nothing converted yet), or raise a `UserError`
    saying why not."""
    import pandas as pd

    p = Path(path)
    data = read_data(p) if data is None else data
    if is_parquet(p, data):
        return read_parquet(p, data)
    try:
        header = next(csv.reader(io.StringIO(data.decode("utf-8-sig").split("\n", 1)[0])), [])
        table = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False,
                            skipinitialspace=True)  # fmt: skip
    except UnicodeDecodeError:
        raise UserError(f"cannot read {p}: it is not UTF-8 text; save it as a UTF-8 CSV") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"cannot read {p} as CSV ({first}); check that it is comma-separated"
        ) from None
    if len(table.columns) == 0 or len(table) == 0:
        raise UserError(f"{p} has no data rows; expected a header row and at least one data row")
    names = [str(c).strip() for c in header]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        where = [k + 1 for k, n in enumerate(names) if n == twice[0]]
        raise UserError(
            f"{p} has the column name {twice[0]!r} more than once (columns "
            f"{', '.join(map(str, where))}); rename the columns so each name is unique"
        )
    table.columns = [str(c).strip() for c in table.columns]
    return table


def read_series(
    path: str | Path,
    target: str,
    time: str | None = None,
    fill: str = "none",
    column_hint: str | None = None,
) -> Series:
    """Read `target` (and the optional `time` column) from a CSV file.

    Rows are numbered as in a spreadsheet view of the data: row 1 is the first row under the header.
    `time=None` uses the first column when it is not the target and reads as times or numbers.
    `column_hint` replaces the advice to pass --target / --time when a column is missing (the
    commands that read a finished run have no such flags).
    """
    if fill not in FILL_METHODS:
        raise UserError(f"unknown fill method {fill!r}; choose one of {', '.join(FILL_METHODS)}")
    data = read_data(path)
    table = read_table(path, data)
    digest = hashlib.sha256(data).hexdigest()
    return series_from_table(table, path, digest, target, time, fill, column_hint)


def series_from_table(
    table: pd.DataFrame,
    path: str | Path,
    digest: str,
    target: str,
    time: str | None = None,
    fill: str = "none",
    column_hint: str | None = None,
    covariates: tuple[str, ...] = (),
    columns: list[str] | None = None,
) -> Series:
    """One series from text cells (`read_series`' work once the file is read). `columns`: the
    columns that may hold the time, in order (default: the table's); `covariates`: columns read
    beside the target, complete (`parse_covariates`)."""
    columns = list(table.columns) if columns is None else columns
    if target not in table.columns:
        raise UserError(
            f"no column {target!r} in {path}; the columns are: {listed(table)}; "
            + (column_hint or "pass one of them with --target")
        )
    if time is not None and time != "" and time not in table.columns:
        raise UserError(
            f"no column {time!r} in {path}; the columns are: {listed(table)}; "
            + (column_hint or "pass one of them with --time, or leave --time out")
        )
    if time is not None and time == target:
        raise UserError(f"--time and --target are both {time!r}; the time column must differ")

    values = parse_numbers(table[target], target, fill)  # (N,) with NaN where missing
    keep = np.ones(len(values), dtype=bool)
    if fill == "drop":
        keep = ~np.isnan(values)

    time_column, stamps = None, None
    if time == "":  # asked for no time column
        pass
    elif time is not None:
        time_column, stamps = time, parse_time(table[time][keep], time, strict=True)
    elif columns[0] != target:
        stamps = parse_time(table[columns[0]][keep], columns[0], strict=False)
        time_column = columns[0] if stamps is not None else None

    values = fill_missing(values, fill)[keep] if fill != "drop" else values[keep]
    if len(values) == 0:
        raise UserError(f"column {target!r} in {path} has no values left; check the file")
    check_magnitude(values, target)
    freq = infer_freq(stamps) if stamps is not None else None
    extra = parse_covariates(table, covariates)[keep] if covariates else None  # (N, C)
    return Series(values, stamps, freq, str(path), target, time_column, digest, covariates=extra)


def parse_covariates(table: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    """Covariate columns -> (N, C) float64. A covariate may not have gaps: a missing cell is
    refused with its column and row (rows counted as in the file, row 1 under the header)."""
    out = np.empty((len(table), len(columns)))
    for c, column in enumerate(columns):
        text = table[column].astype(str).str.strip()
        gaps = np.flatnonzero(text.str.lower().isin(MISSING_TOKENS).to_numpy())
        if len(gaps):
            row = int(table.index[gaps[0]]) + 1
            raise UserError(
                f"covariate column {column!r} has a gap at row {row} (line {row + 1} of the "
                f"file; {len(gaps)} missing in all); covariates must be complete: fill the cells"
            )
        out[:, c] = parse_numbers(text, column, "none")
        check_magnitude(out[:, c], column)
    return out


def listed(table: pd.DataFrame) -> str:
    """The table's column names, quoted, for a message."""
    return ", ".join(map(repr, table.columns))


def check_magnitude(values: np.ndarray, column: str) -> None:
    """Refuse values whose squares overflow or underflow float64 (see LARGEST, SMALLEST)."""
    size = np.abs(values)
    bad = np.flatnonzero((size > LARGEST) | ((size < SMALLEST) & (size > 0)))
    if len(bad):
        row = int(bad[0])
        raise UserError(
            f"value {values[row]:g} in column {column!r} at row {row + 1} is outside what training "
            f"can square in float64 (1e-150 to 1e150 in size); rescale the column (e.g. divide "
            "every value by a power of ten)"
        )


def parse_numbers(cells: pd.Series, column: str, fill: str) -> np.ndarray:
    """Text cells -> (N,) float64; NaN where missing. Non-numeric and infinite cells are errors."""
    import pandas as pd

    text = cells.astype(str).str.strip()
    missing = text.str.lower().isin(MISSING_TOKENS).to_numpy()
    numbers = pd.to_numeric(text.where(~missing, None), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(np.isnan(numbers) & ~missing)
    if len(bad):
        row = int(bad[0])
        raise UserError(
            f"non-numeric value {text.iloc[row]!r} in column {column!r} at row {row + 1} "
            f"(line {row + 2} of the file); fix that cell or remove the row"
        )
    infinite = np.flatnonzero(np.isinf(numbers))
    if len(infinite):
        row = int(infinite[0])
        raise UserError(
            f"infinite value {text.iloc[row]!r} in column {column!r} at row {row + 1}; "
            "replace it with a finite number or remove the row"
        )
    n_missing = int(missing.sum())
    if n_missing and fill == "none":
        first = int(np.flatnonzero(missing)[0])
        raise UserError(
            f"column {column!r} has {n_missing} missing value(s), the first at row {first + 1}; "
            "pass --fill interpolate, --fill ffill or --fill drop"
        )
    if n_missing == len(numbers):
        raise UserError(f"column {column!r} has no values, only missing cells; check the file")
    return numbers


def fill_missing(values: np.ndarray, fill: str) -> np.ndarray:
    """Fill NaN gaps: linear interpolation or carry forward (leading gaps take the first value)."""
    import pandas as pd

    s = pd.Series(values)
    if fill == "interpolate":
        s = s.interpolate(method="linear", limit_direction="both")
    elif fill == "ffill":
        s = s.ffill().bfill()
    return s.to_numpy(dtype=np.float64)


def parse_time(cells: pd.Series, column: str, strict: bool) -> pd.DatetimeIndex | np.ndarray | None:
    """Numbers (years, step counts) or dates, strictly increasing.

    Not strict (the first column, auto-detected): None when the cells are not times or numbers;
    times or numbers out of order are an error either way (never dropped or used in file order)."""
    import pandas as pd

    text = cells.astype(str).str.strip()
    numbers = pd.to_numeric(text, errors="coerce")
    if not numbers.isna().any():
        stamps: pd.DatetimeIndex | np.ndarray = numbers.to_numpy(dtype=np.float64)
        if np.all(stamps == np.round(stamps)) and np.all(np.abs(stamps) < 2**53):
            stamps = stamps.astype(np.int64)
        order = np.diff(stamps)
    else:
        try:
            with warnings.catch_warnings():  # pandas 2 warns about mixed offsets: refused below
                warnings.simplefilter("ignore")
                parsed = pd.to_datetime(text, errors="raise", format="mixed")
            if parsed.dtype == object:
                offsets = sorted({str(getattr(t, "tzinfo", None)) for t in parsed})
                raise UserError(
                    f"time column {column!r} mixes time zones or offsets ({', '.join(offsets[:3])}"
                    "); write every time in one offset or in UTC (e.g. 2024-01-01T00:00Z)"
                )
            stamps = pd.DatetimeIndex(parsed)
        except (ValueError, TypeError, OverflowError) as err:
            if isinstance(err, UserError):
                raise
            if not strict:
                return None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                parsed = pd.to_datetime(text, errors="coerce", format="mixed")
            bad = np.flatnonzero(pd.isna(parsed))
            if not len(bad):
                raise UserError(
                    f"time column {column!r} cannot be read as times ({err}); check the column"
                ) from None
            row = int(bad[0])
            if not strict:
                return None
            parsed = pd.to_datetime(text, errors="coerce", format="mixed")
            row = int(np.flatnonzero(parsed.isna().to_numpy())[0])
            raise UserError(
                f"time column {column!r} has {text.iloc[row]!r} at row {row + 1}, not a date or "
                "number; fix the cell, or choose another column with --time"
            ) from None
        if stamps.isna().any():
            if not strict:
                return None
            row = int(np.flatnonzero(stamps.isna())[0])
            raise UserError(
                f"time column {column!r} has no time at row {row + 1}; fill in the cell or "
                "remove the row"
            )
        if stamps.tz is not None:
            stamps = stamps.tz_convert(None)
        order = np.diff(stamps.asi8)
    not_increasing = np.flatnonzero(order <= 0)
    if len(not_increasing):
        row = int(not_increasing[0]) + 1
        what = "repeats" if order[row - 1] == 0 else "goes back"
        guessed = "" if strict else " (the first column, taken as the time column)"
        raise UserError(
            f"time column {column!r}{guessed} {what} at row {row + 1} ({text.iloc[row - 1]!r} "
            f"then {text.iloc[row]!r}): it is not strictly increasing; sort the file by time "
            "and remove duplicate rows"
            + ("" if strict else ", or pass --time '' for no time column")
        )
    return stamps


def infer_freq(stamps: pd.DatetimeIndex | np.ndarray) -> str | float | None:
    """pandas' frequency alias for dates ("MS", "D", ...); the common step for numbers; else None."""
    import pandas as pd

    if len(stamps) < 3:
        return None
    if isinstance(stamps, pd.DatetimeIndex):
        with warnings.catch_warnings():  # pandas 3 announces offsets instead of strings
            warnings.simplefilter("ignore")
            freq = pd.infer_freq(stamps)
        return freq if freq is None or isinstance(freq, str) else freq.freqstr
    steps = np.diff(stamps)
    step = steps[0]
    return float(step) if np.all(steps == step) and math.isfinite(float(step)) else None


def continue_time(series: Series, steps: int) -> pd.DatetimeIndex | np.ndarray:
    """The next `steps` time stamps after the series ends: (steps,).

    Dates continue with the inferred frequency (or the median step when none was inferred);
    numbers with their common (or median) step; no time column counts on from len(series).
    """
    import pandas as pd

    if series.time is None:
        return np.arange(len(series), len(series) + steps)
    stamps = series.time
    if isinstance(stamps, pd.DatetimeIndex):
        if series.freq is not None:
            return pd.date_range(stamps[-1], periods=steps + 1, freq=series.freq)[1:]
        step = pd.Timedelta(np.median(np.diff(stamps.asi8)))
        return pd.DatetimeIndex([stamps[-1] + step * (k + 1) for k in range(steps)])
    step = series.freq if series.freq is not None else float(np.median(np.diff(stamps)))
    out = stamps[-1] + step * np.arange(1, steps + 1)
    return out.astype(stamps.dtype) if float(step).is_integer() else out
