"""The run directory: everything a later command needs, written so that a crash never damages it.

    RUN/
      .lstmbyhand-run      the marker: only lstmbyhand writes it; the run's format and random run id
      .lock                held (an OS file lock) by the `train` process writing the run; its pid
      config.json          every resolved setting, data file and columns, scaler, versions, world_size
      weights.safetensors  the best weights (lowest validation loss)
      state.safetensors    the training state after the last finished epoch: current and best
                           weights, optimizer tensors, torch RNG state; the rest (epoch, best, history,
                           optimizer settings) as JSON in the file's metadata. One file, so one rename
                           makes it all visible at once.
      metrics.csv          epoch, train_loss, val_loss, lr, seconds (one row per finished epoch)
      loss.png             train and validation loss per epoch
      refit.safetensors    after `train --refit`: the weights refit on the whole series (refit.py)
      refit-state.safetensors  the refit's resumable state
      statistical.safetensors  the statistical models' forecasts `train` made and `evaluate` asks
                           for, keyed by fit and history (baselines.py `stored`): so `evaluate`
                           neither imports statsforecast nor refits; absent with `--base none`
      series.safetensors   the series `train` read, as parsed, with the data file's SHA-256
                           (parsed.py): `evaluate` on that unchanged file reads them, not pandas

Every file is written atomically (`files.atomic_write`): a crash at any moment leaves either the old
file or the new one. Integrity covers every byte a later command reads:
- a tensor file's metadata holds the run id and one SHA-256 over its tensors (names, dtypes, shapes,
  bytes), its JSON metadata and the run id; the file must also be exactly what `save_tensors` writes
  for that content (so not even the header's padding can change);
- config.json and the marker carry a SHA-256 of the rest of their content and must be byte for byte
  the JSON this module writes;
- metrics.csv must be the rendering of the state's history (one row behind after a kill, or one
  ahead after a power loss between an epoch's renames, which the next `train --resume` repairs).
A file that fails any check, or holds another run's id, is refused with one `UserError` naming it.
safetensors and JSON only: loading never runs code from a file (no pickle, no torch.load).
"""

from __future__ import annotations

import csv
import errno
import fcntl
import hashlib
import io
import json
import math
import os
import secrets
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import safetensors
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from lstmbyhand.errors import UserError
from lstmbyhand.forecast.baselines import check_stored
from lstmbyhand.forecast.config import RUN_FORMAT
from lstmbyhand.forecast.files import (
    atomic_write,
    atomic_write_all,
    remove_stale_temporaries,
    write_error,
)

MARKER = ".lstmbyhand-run"
LOCK = ".lock"
CONFIG = "config.json"
WEIGHTS = "weights.safetensors"
STATE = "state.safetensors"
METRICS = "metrics.csv"
LOSS_PLOT = "loss.png"
REFIT = "refit.safetensors"
REFIT_STATE = "refit-state.safetensors"
FORECASTS = "statistical.safetensors"
SERIES = "series.safetensors"
RUN_FILES = (CONFIG, WEIGHTS, STATE, METRICS, LOSS_PLOT, REFIT, REFIT_STATE, FORECASTS, SERIES)
METRIC_FIELDS = ("epoch", "train_loss", "val_loss", "lr", "seconds")
FIX = "retrain, or restore the file from a backup"


def tensors_digest(tensors: dict[str, torch.Tensor], *extra: str) -> str:
    """SHA-256 over names, dtypes, shapes and bytes, in name order, then each of `extra`."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    for text in extra:
        h.update(f"|{len(text)}|{text}".encode())
    return h.hexdigest()


def _tensor_file(tensors: dict[str, torch.Tensor], meta: dict, run_id: str) -> bytes:
    """The file's exact bytes. One metadata key: safetensors writes several in random order."""
    digest = tensors_digest(tensors, json.dumps(meta), run_id)
    info = json.dumps({"run_id": run_id, "meta": meta, "sha256": digest}, allow_nan=False)
    return serialize(tensors, {"lstmbyhand": info})


def serialize(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """`safetensors.torch.save(tensors, metadata)`'s bytes, for contiguous CPU tensors, through
    the same serializer (safetensors' `serialize` of each tensor's dtype, shape and memory) but
    without `save`'s Python work per tensor (sparse and shared-memory checks, a numpy view of
    each): most of a checkpoint's CPU time. Where that API is missing, or on a big-endian
    machine (where `save` swaps the bytes), `save` itself."""
    spec = getattr(safetensors, "TensorSpec", None)
    if spec is None or sys.byteorder != "little":
        return st_save(tensors, metadata=metadata)
    tensors = {k: t.detach().cpu().contiguous() for k, t in tensors.items()}  # (no copy if so)
    empty = np.empty(0, dtype=np.uint8)  # a valid address for tensors of no elements
    flat = {
        name: spec(dtype=str(t.dtype).split(".")[-1], shape=t.shape,
                   data_ptr=t.data_ptr() if t.numel() else empty.ctypes.data,
                   data_len=t.numel() * t.element_size())
        for name, t in tensors.items()
    }  # fmt: skip
    return bytes(safetensors.serialize(flat, metadata=metadata))


def save_tensors(
    path: Path, tensors: dict[str, torch.Tensor], meta: dict | None = None, run_id: str = ""
) -> None:
    """safetensors file with `meta` as JSON, the run id and the digest in its metadata; atomic."""
    atomic_write(path, tensor_bytes(tensors, meta, run_id))


def tensor_bytes(tensors: dict[str, torch.Tensor], meta: dict | None, run_id: str) -> bytes:
    """The bytes `save_tensors` writes."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    return _tensor_file(tensors, meta or {}, run_id)


def read_bytes(path: Path, what: str) -> bytes:
    """A run file's bytes, or a `UserError` saying why not (missing, unreadable, too big)."""
    try:
        size = os.stat(path).st_size
        if size > 2**31:
            raise UserError(f"{what} {path} is {size / 2**30:.0f} GiB, not a run file; {FIX}")
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(f"{what} {path} is missing; {FIX}") from None
    except OSError as err:
        raise UserError(f"cannot read {what} {path} ({err.strerror}); check the file") from None


def load_tensors(
    path: Path, what: str, run_id: str | None = None
) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a file written by `save_tensors`; refuse it whole if it is damaged or another run's."""
    path = Path(path)
    data = read_bytes(path, what)
    try:
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8 : 8 + header_len]).get("__metadata__") or {}
        info = json.loads(metadata["lstmbyhand"])
        meta, digest, file_id = info["meta"], info["sha256"], info["run_id"]
        if not (isinstance(meta, dict) and isinstance(file_id, str)):
            raise TypeError("meta")
    except (SafetensorError, ValueError, KeyError, TypeError, RuntimeError, OverflowError,
            AttributeError):  # fmt: skip
        raise UserError(
            f"{what} {path} is damaged or truncated and was not loaded; {FIX}"
        ) from None
    if tensors_digest(tensors, json.dumps(meta), file_id) != digest or data != _tensor_file(
        tensors, meta, file_id
    ):
        raise UserError(f"{what} {path} is damaged (checksum mismatch) and was not loaded; {FIX}")
    if run_id is not None and file_id != run_id:
        raise UserError(
            f"{what} {path} belongs to another run (run id {file_id[:12] or 'none'}, this run is "
            f"{run_id[:12]}) and was not loaded; put this run's own file back, or {FIX}"
        )
    return tensors, meta


def _signed_json(content: dict) -> bytes:
    """`content` plus a "sha256" of it, as the exact bytes every run file of JSON has."""
    body = json.dumps(content, indent=2, allow_nan=False)
    signed = {**content, "sha256": hashlib.sha256(body.encode()).hexdigest()}
    return (json.dumps(signed, indent=2, allow_nan=False) + "\n").encode()


def _read_signed_json(path: Path, what: str) -> dict:
    """Read a file written from `_signed_json`; refuse it unless it is exactly that."""
    data = read_bytes(path, what)
    try:
        signed = json.loads(data)
        content = {k: v for k, v in signed.items() if k != "sha256"}
        ok = isinstance(signed, dict) and _signed_json(content) == data
    except (ValueError, UnicodeDecodeError, AttributeError, TypeError):
        raise UserError(f"{path} is not valid JSON; restore it or train the run again") from None
    if not ok:
        raise UserError(
            f"{what} {path} was edited or is damaged (checksum mismatch); restore it or train "
            "the run again"
        )
    return content


def finite_or_refuse(tensors: dict[str, torch.Tensor], path: Path, what: str) -> None:
    """Refuse tensors holding NaN or infinity: such weights give NaN forecasts."""
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise UserError(
                f"{what} {path} holds NaN or infinite values (in {name}) and was not used; {FIX}"
            )


def check_layout(
    tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: Path, what: str
) -> None:
    """Every expected tensor present with the expected dtype and shape, and nothing else."""
    want = {k: (v.dtype, tuple(v.shape)) for k, v in expected.items()}
    got = {k: (v.dtype, tuple(v.shape)) for k, v in tensors.items()}
    if want != got:
        name = sorted(k for k in {*want, *got} if want.get(k) != got.get(k))[0]
        expect, have = (_describe(d.get(name)) for d in (want, got))
        raise UserError(
            f"{what} {path} does not fit the model in its run's {CONFIG}: expected {name} "
            f"{expect}, got {have}; {FIX}"
        )


def _describe(layout: tuple | None) -> str:
    return "absent" if layout is None else f"{layout[0]} of shape {layout[1]}"


class RunDir:
    """Paths, lock and readers/writers for one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None
        self._id: str | None = None
        self._metrics = MetricsText()  # metrics.csv's text, extended epoch by epoch

    def file(self, name: str) -> Path:
        return self.path / name

    def own_files(self) -> tuple[str, ...]:
        """The names lstmbyhand writes in a run directory (`--force` removes these, no others)."""
        return (*RUN_FILES, MARKER, LOCK, *self._extra())

    def _extra(self) -> list[str]:
        try:
            extra = json.loads(self.file(MARKER).read_bytes()).get("extra", [])
        except (OSError, ValueError, AttributeError):
            return []
        return [
            n for n in extra if isinstance(n, str) and "/" not in n and n not in ("", ".", "..")
        ]

    # --- identity -----------------------------------------------------------------------------
    def is_run(self) -> bool:
        """True when the marker is there: only lstmbyhand writes it."""
        return self.file(MARKER).is_file()

    @property
    def run_id(self) -> str:
        """The random id drawn when the run was created, from the (checked) marker."""
        if self._id is None:
            self._id = self._marker()["run_id"]
        return self._id

    def _marker(self) -> dict:
        if not self.path.is_dir():
            raise UserError(f"no run directory at {self.path}; check the path or train first")
        if not self.is_run():
            raise UserError(
                f"{self.path} is not a lstmbyhand run (no {MARKER}, which `lstmbyhand train` "
                "writes); check the path, or train into it"
            )
        marker = _read_signed_json(self.file(MARKER), "run marker")
        if marker.get("format") != RUN_FORMAT or not isinstance(marker.get("run_id"), str):
            raise UserError(
                f"{self.path} is a run of format {marker.get('format')!r}; this lstmbyhand reads "
                f"format {RUN_FORMAT}: train the run again"
            )
        return marker

    def remember(self, name: str) -> None:
        """Record a file written into the run by a later command (e.g. gates.png), for --force."""
        marker = self._marker()
        extra = sorted({*marker.get("extra", []), name} - set(RUN_FILES))
        atomic_write(self.file(MARKER), _signed_json({**marker, "extra": extra}))

    # --- creating and locking -----------------------------------------------------------------
    def create(self, force: bool) -> list[str]:
        """Make a fresh run directory (and lock it); an existing run is replaced only with `force`.

        Returns the names of the old run's files that `force` removed. A folder that is not a run
        is used only when it is empty: lstmbyhand never deletes what it did not write."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise UserError(f"--out {p} is a file, not a directory; choose another --out")
        removed: list[str] = []
        if p.is_dir() and self.is_run():
            if not force:
                raise UserError(
                    f"{p} already holds a run; pass --resume to continue it, --force to "
                    "replace it, or choose another --out"
                )
            self.lock()
            for name in self.own_files():
                if name != LOCK and self.file(name).is_file():
                    self.file(name).unlink()
                    removed.append(name)
        elif p.is_dir() and any(p.iterdir()):
            raise UserError(
                f"{p} exists, is not empty and is not a lstmbyhand run; lstmbyhand only writes "
                "runs into new or empty folders: choose another --out"
            )
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise write_error(p / MARKER, err, 0) from None
        self.lock()
        self._id = secrets.token_hex(16)
        atomic_write(self.file(MARKER), _signed_json({"format": RUN_FORMAT, "run_id": self._id}))
        return removed

    def lock(self) -> None:
        """Hold an OS lock on RUN/.lock until `unlock` (or the process ends: a crash frees it)."""
        if self._lock_fd is not None:
            return
        try:
            fd = os.open(self.file(LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise write_error(self.file(LOCK), err, 0) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise UserError(
                    f"run {self.path} is being trained by pid {holder}; wait for it to finish or "
                    "stop it, or choose another --out"
                ) from None
            raise write_error(self.file(LOCK), err, 0) from None
        os.ftruncate(fd, 0)  # a lock left by a crashed process is simply taken over
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        remove_stale_temporaries(self.path)

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the lock
            self._lock_fd = None

    @contextmanager
    def locked(self):
        """The lock for the block, when no trainer holds it; False (no lock) while one does."""
        try:
            self.lock()
        except UserError:
            yield False
            return
        try:
            yield True
        finally:
            self.unlock()

    def require(self, *names: str) -> None:
        """Raise a `UserError` unless this is a run directory holding all `names`."""
        self._marker()
        missing = [n for n in names if not self.file(n).is_file()]
        if missing:
            raise UserError(
                f"{self.path} is not a complete run (missing {', '.join(missing)}); "
                "train again into it with --force, or pass --resume if training was interrupted"
            )

    # --- config -------------------------------------------------------------------------------
    def write_config(self, config: dict) -> None:
        if config.get("run_id") != self.run_id:
            raise ValueError(
                f"expected the config of run {self.run_id}, got {config.get('run_id')}"
            )
        _check_finite_json(config, self.file(CONFIG))
        atomic_write(self.file(CONFIG), _signed_json(config))

    def read_config(self) -> dict:
        """config.json, checked byte for byte and against the marker's run id (a plain dict)."""
        self.require(CONFIG)
        config = _read_signed_json(self.file(CONFIG), "run config")
        if config.get("run_id") != self.run_id:
            raise UserError(
                f"{self.file(CONFIG)} belongs to another run (its run id differs from "
                f"{self.file(MARKER)}); put this run's own file back, or train again"
            )
        return config

    # --- tensors ------------------------------------------------------------------------------
    def write_weights(self, state_dict: dict[str, torch.Tensor], meta: dict) -> None:
        save_tensors(self.file(WEIGHTS), state_dict, meta, self.run_id)

    def read_weights(self) -> tuple[dict[str, torch.Tensor], dict]:
        self.require(WEIGHTS)
        return load_tensors(self.file(WEIGHTS), "weights file", self.run_id)

    def write_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        save_tensors(self.file(STATE), tensors, meta, self.run_id)

    def write_checkpoint(
        self,
        weights: tuple[dict[str, torch.Tensor], dict] | None,
        state: tuple[dict[str, torch.Tensor], dict],
        rows: list[dict],
    ) -> None:
        """One epoch's files: the best weights (None: unchanged), the state, metrics.csv, in that
        order, through `atomic_write_all` (one folder fsync for the three). Any mix of old and
        new files a power loss may leave is one `--resume` repairs: it reads only the state,
        rewrites the weights from the state's best and metrics.csv from its history, and
        `check_metrics` accepts metrics.csv one epoch behind or ahead of the state."""
        items = (
            [] if weights is None else [(self.file(WEIGHTS), tensor_bytes(*weights, self.run_id))]
        )
        items.append((self.file(STATE), tensor_bytes(*state, self.run_id)))
        items.append((self.file(METRICS), self._metrics(rows)))
        atomic_write_all(items)

    def read_state(self) -> tuple[dict[str, torch.Tensor], dict]:
        return load_tensors(self.file(STATE), "training state", self.run_id)

    def write_refit(self, state_dict: dict[str, torch.Tensor], meta: dict) -> None:
        save_tensors(self.file(REFIT), state_dict, meta, self.run_id)

    def read_refit(self) -> tuple[dict[str, torch.Tensor], dict]:
        return load_tensors(self.file(REFIT), "refit weights", self.run_id)

    def write_refit_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        save_tensors(self.file(REFIT_STATE), tensors, meta, self.run_id)

    def read_refit_state(self) -> tuple[dict[str, torch.Tensor], dict]:
        return load_tensors(self.file(REFIT_STATE), "refit state", self.run_id)

    def _save_arrays(self, name: str, arrays: dict[str, np.ndarray], meta: dict) -> None:
        """numpy arrays as the run file `name` (as tensors: save_tensors)."""
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        save_tensors(self.file(name), tensors, meta, self.run_id)

    def write_statistical(self, saved: tuple[dict[str, np.ndarray], dict]) -> None:
        """The statistical forecasts `baselines.stored` returns; nothing when there are none."""
        arrays, meta = saved
        if arrays:
            self._save_arrays(FORECASTS, arrays, meta)

    def read_statistical(self) -> tuple[dict[str, np.ndarray], dict] | None:
        """The stored statistical forecasts, checked (integrity, run id, layout); None when the
        run has none (then they are computed again, the same numbers)."""
        if not self.file(FORECASTS).is_file():
            return None
        tensors, meta = load_tensors(self.file(FORECASTS), "statistical forecasts", self.run_id)
        arrays = {k: v.numpy() for k, v in tensors.items() if v.dtype == torch.float64}
        try:
            if len(arrays) != len(tensors):
                raise ValueError("expected float64 forecasts")
            check_stored(arrays, meta)
        except ValueError:
            raise UserError(
                f"statistical forecasts {self.file(FORECASTS)} do not have the layout lstmbyhand "
                f"writes; delete the file (evaluate then computes them again), or {FIX}"
            ) from None
        return arrays, meta

    def write_series(self, kept: tuple[dict[str, np.ndarray], dict] | None) -> None:
        """The series as parsed (`parsed.pack`); None (not kept): removes an older file."""
        if kept is None:
            if self.file(SERIES).is_file():
                self.file(SERIES).unlink()
            return
        self._save_arrays(SERIES, *kept)

    def read_series(self, path: str, digest: str):
        """The kept series as a `Panel` when the run has them and `digest` (the SHA-256 of the
        data file's bytes now) is the one they were parsed from; else None. Checked like every
        run file (integrity, run id) and for `parsed.pack`'s layout."""
        from lstmbyhand.forecast.parsed import unpack

        if not self.file(SERIES).is_file():
            return None
        tensors, meta = load_tensors(self.file(SERIES), "kept series", self.run_id)
        if meta.get("sha256") != digest:
            return None  # the data file changed since train read it: read it again
        try:
            return unpack({k: v.numpy() for k, v in tensors.items()}, meta, path, digest)
        except (ValueError, KeyError, TypeError):
            raise UserError(
                f"kept series {self.file(SERIES)} do not have the layout lstmbyhand writes; "
                f"delete the file (evaluate then reads the data file), or {FIX}"
            ) from None

    # --- metrics ------------------------------------------------------------------------------
    def write_metrics(self, rows: list[dict]) -> None:
        """Rewrite metrics.csv from the full history (so every epoch appears exactly once)."""
        atomic_write(self.file(METRICS), self._metrics(rows))

    def check_metrics(self, rows: list[dict]) -> None:
        """metrics.csv must be the state's history, that history less its last epoch (a kill
        between the two writes), or with one more epoch's row (a power loss that kept the new
        metrics.csv's rename and lost the state's, `write_checkpoint`); anything else is an
        edit and refused."""
        have = (
            read_bytes(self.file(METRICS), "metrics file") if self.file(METRICS).exists() else b""
        )
        if have not in (render_metrics(rows), render_metrics(rows[:-1]), b"") and not _one_ahead(
            have, rows
        ):
            raise UserError(
                f"{self.file(METRICS)} does not match the training state in {self.file(STATE)} "
                "(edited?); delete metrics.csv to rebuild it from the state, or start over "
                "with --force"
            )


def _one_ahead(have: bytes, rows: list[dict]) -> bool:
    """`have` is metrics.csv for `rows` plus one well-formed row of the next epoch."""
    expected = render_metrics(rows)
    if not have.startswith(expected):
        return False
    extra = have[len(expected) :].decode("utf-8", "replace").splitlines(keepends=True)
    if len(extra) != 1 or not extra[0].endswith("\n"):
        return False
    cells = next(csv.reader([extra[0]]))
    try:
        row = dict(zip(METRIC_FIELDS, cells, strict=True))
        values = [float(row[k]) for k in METRIC_FIELDS if row[k] != ""]
    except ValueError:
        return False
    return row["epoch"] == str(len(rows) + 1) and all(math.isfinite(v) for v in values)


def render_metrics(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: row[k] for k in METRIC_FIELDS})
    return buf.getvalue().encode()


class MetricsText:
    """`render_metrics` of a growing history, each row rendered once: a row's line depends on
    that row alone, so the lines of the rows seen before are kept (a history that is not the
    one seen plus rows at its end is rendered afresh)."""

    HEADER = render_metrics([])

    def __init__(self) -> None:
        self.rows: list[dict] = []  # copies of the rows rendered
        self.lines: list[bytes] = []  # one line per row

    def __call__(self, rows: list[dict]) -> bytes:
        if rows[: len(self.rows)] != self.rows:
            self.rows, self.lines = [], []
        for row in rows[len(self.rows) :]:
            self.lines.append(render_metrics([row])[len(self.HEADER) :])
            self.rows.append(dict(row))
        return self.HEADER + b"".join(self.lines)


def _check_finite_json(value: object, path: Path) -> None:
    """Refuse to write NaN or infinity into a JSON file (no JSON reader could trust it)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"a value for {path} is {value}; the data overflowed: rescale the column")
    if isinstance(value, dict):
        for v in value.values():
            _check_finite_json(v, path)
    elif isinstance(value, list):
        for v in value:
            _check_finite_json(v, path)


def load_model_weights(model: torch.nn.Module, run: RunDir) -> dict:
    """Fill `model` from RUN/weights.safetensors; refuse weights that do not fit it exactly
    (names, dtypes, shapes) or that are not finite."""
    tensors, meta = run.read_weights()
    check_layout(tensors, model.state_dict(), run.file(WEIGHTS), "weights file")
    finite_or_refuse(tensors, run.file(WEIGHTS), "weights file")
    model.load_state_dict(tensors)
    return meta
