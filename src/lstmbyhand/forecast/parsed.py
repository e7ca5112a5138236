"""The series `train` read, kept in the run (RUN/series.safetensors), so `evaluate` needs no pandas.

    arrays, meta = pack(panel)                  # train: every series as parsed, with the file's SHA-256
    panel = unpack(arrays, meta, path, digest)  # evaluate: the same Panel, when the file is unchanged

Reading a CSV or Parquet file takes pandas (and pyarrow, which pandas imports when installed): a
large share of a short `evaluate`'s start-up. `train` has parsed the file already; it keeps what
that gave -- per series its values (N,) float64, covariates (N, C) float64, time stamps (numbers as
parsed; dates as int64 nanoseconds), id, target, time column and frequency -- beside the SHA-256 of
the file's bytes. `evaluate` on the run's own data file reads the file's bytes, and only when
their SHA-256 is the one kept does it take the kept series instead of parsing the file again
(`restore.open_pool`); any other file, or a changed one, is read by pandas as before. The numbers
are the same either way: they are what the same parse of the same bytes gave.

Dates come back as a numpy datetime64[ns] array (not a pandas DatetimeIndex): scoring never looks
at them, and a run with calendar features (which need pandas dates) is always read by pandas.
The file is a run file like the others (rundir.py): checksummed, with the run id; a damaged file
or another run's is refused. A panel held only in part (a torchrun rank's) or larger than
`LARGEST` bytes is not kept: `evaluate` then reads the data file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lstmbyhand.forecast.data import Series

if TYPE_CHECKING:
    from lstmbyhand.forecast.panel import Panel

LARGEST = 1 << 28  # bytes of series kept at most (beyond: evaluate parses the file)
TIMES = ("none", "int64", "float64", "dates")  # how a series' time stamps are kept


def pack(panel: Panel) -> tuple[dict[str, np.ndarray], dict] | None:
    """Every series of `panel` as arrays "k.values", "k.covariates", "k.time" (k: its place) and
    their description as JSON; None when the panel is held only in part or is too large."""
    if panel.partial:
        return None
    arrays: dict[str, np.ndarray] = {}
    rows = []
    for k, x in enumerate(panel.series):
        arrays[f"{k}.values"] = np.ascontiguousarray(x.values, dtype=np.float64)  # (N,)
        if x.covariates is not None:
            arrays[f"{k}.covariates"] = np.ascontiguousarray(x.covariates, dtype=np.float64)
        kind, stamps = _times(x.time)
        if stamps is not None:
            arrays[f"{k}.time"] = stamps  # (N,)
        freq = float(x.freq) if isinstance(x.freq, (float, int)) else x.freq
        rows.append({"id": x.id, "target": x.target, "time_column": x.time_column,
                     "freq": freq, "time": kind})  # fmt: skip
    if sum(a.nbytes for a in arrays.values()) > LARGEST:
        return None
    meta = {"sha256": panel.sha256, "layout": panel.layout, "id_column": panel.id_column,
            "held": panel.held, "series": rows}  # fmt: skip
    return arrays, meta


def _times(stamps: object) -> tuple[str, np.ndarray | None]:
    """(how they are kept, the array kept) for a series' time stamps."""
    if stamps is None:
        return "none", None
    if isinstance(stamps, np.ndarray) and stamps.dtype in (np.int64, np.float64):
        return str(stamps.dtype), np.ascontiguousarray(stamps)
    return "dates", np.asarray(stamps.asi8, dtype=np.int64)  # type: ignore[attr-defined]


def unpack(arrays: dict[str, np.ndarray], meta: dict, path: str, digest: str) -> Panel:
    """The panel `pack` kept, its series' path `path` and SHA-256 `digest` (the file's, checked
    equal to the kept one by the caller). Raises ValueError unless the layout is `pack`'s."""
    from lstmbyhand.forecast.panel import Panel

    rows = meta.get("series")
    if not isinstance(rows, list) or meta.get("layout") not in ("single", "long", "wide"):
        raise ValueError("expected the series' descriptions")
    want = set()
    series = []
    for k, row in enumerate(rows):
        values = arrays.get(f"{k}.values")
        if not isinstance(row, dict) or values is None or values.dtype != np.float64:
            raise ValueError(f"expected series {k}'s values")
        n = len(values)
        covariates = arrays.get(f"{k}.covariates")
        time = _stamps(row.get("time"), arrays.get(f"{k}.time"), n)
        if covariates is not None and (covariates.ndim != 2 or len(covariates) != n):
            raise ValueError(f"expected series {k}'s covariates, (N, C)")
        want |= {f"{k}.values"} | {
            f"{k}.{a}" for a in ("covariates", "time") if f"{k}.{a}" in arrays
        }
        series.append(Series(values, time, row["freq"], path, str(row["target"]),
                             row["time_column"], digest, str(row["id"]), covariates))  # fmt: skip
    if want != set(arrays):
        raise ValueError(f"arrays not described: {sorted(set(arrays) - want)}")
    held = int(meta.get("held", 0))
    return Panel(series, meta["layout"], meta["id_column"], path, digest, held=held)


def _stamps(kind: object, stamps: np.ndarray | None, n: int) -> np.ndarray | None:
    """A series' time stamps back, as `_times` kept them."""
    if kind not in TIMES or (kind == "none") != (stamps is None):
        raise ValueError(f"expected time stamps kept as one of {TIMES}, got {kind!r}")
    if stamps is None:
        return None
    if stamps.shape != (n,) or str(stamps.dtype) != ("int64" if kind == "dates" else kind):
        raise ValueError("expected one time stamp per value")
    return stamps.view("datetime64[ns]") if kind == "dates" else stamps
