"""The run directory: everything a later command needs, written so that a crash never damages it.

    RUN/
      config.json          every resolved setting, data file and columns, scaler, versions, world_size
      weights.safetensors  the best weights (lowest validation loss)
      state.safetensors    the training state after the last finished epoch: current and best
                           weights, optimizer tensors, torch RNG state; the rest (epoch, best, history,
                           optimizer settings) as JSON in the file's metadata. One file, so one rename
                           makes it all visible at once.
      metrics.csv          epoch, train_loss, val_loss, lr, seconds (one row per finished epoch)
      loss.png             train and validation loss per epoch

Every file is written to a temporary file in the same directory, flushed, fsynced and renamed over
the old one (`atomic_write`): a crash at any moment leaves either the old file or the new one.
Tensor files carry a SHA-256 of their tensors in their metadata; a file that does not match, or
that safetensors cannot parse (truncated), is refused with a `UserError`, never loaded half-way.
safetensors and JSON only: loading never runs code from a file (no pickle, no torch.load).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from lstmbyhand.errors import UserError

CONFIG = "config.json"
WEIGHTS = "weights.safetensors"
STATE = "state.safetensors"
METRICS = "metrics.csv"
LOSS_PLOT = "loss.png"
RUN_FILES = (CONFIG, WEIGHTS, STATE, METRICS, LOSS_PLOT)
METRIC_FIELDS = ("epoch", "train_loss", "val_loss", "lr", "seconds")


def atomic_write(path: Path, data: bytes) -> None:
    """Write bytes so that readers see the old file or the whole new one, never a part."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict | None = None) -> None:
    """safetensors file with `meta` as JSON and the tensors' digest in its metadata; atomic."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    metadata = {"sha256": tensors_digest(tensors), "meta": json.dumps(meta or {})}
    atomic_write(path, st_save(tensors, metadata=metadata))


def load_tensors(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a file written by `save_tensors`; refuse it whole if it is damaged."""
    path = Path(path)
    fix = "retrain, or restore the file from a backup"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{what} {path} is missing; {fix}") from None
    except OSError as err:
        raise UserError(f"cannot read {what} {path} ({err.strerror}); check the file") from None
    try:
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8 : 8 + header_len]).get("__metadata__") or {}
        meta = json.loads(metadata["meta"])
        digest = metadata["sha256"]
    except (SafetensorError, ValueError, KeyError, TypeError, RuntimeError, OverflowError):
        raise UserError(
            f"{what} {path} is damaged or truncated and was not loaded; {fix}"
        ) from None
    if tensors_digest(tensors) != digest:
        raise UserError(f"{what} {path} is damaged (checksum mismatch) and was not loaded; {fix}")
    return tensors, meta


class RunDir:
    """Paths and readers/writers for one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    # --- creating -----------------------------------------------------------------------------
    def is_run(self) -> bool:
        return any(self.file(n).exists() for n in (CONFIG, WEIGHTS, STATE))

    def create(self, force: bool) -> None:
        """Make a fresh run directory; an existing run is only replaced with `force`."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise UserError(f"--out {p} is a file, not a directory; choose another --out")
        if p.is_dir() and self.is_run():
            if not force:
                raise UserError(
                    f"{p} already holds a run; pass --resume to continue it, --force to "
                    "replace it, or choose another --out"
                )
            for name in RUN_FILES:
                self.file(name).unlink(missing_ok=True)
        elif p.is_dir() and any(p.iterdir()) and not force:
            raise UserError(
                f"{p} exists and is not empty; choose another --out, or pass --force to use it"
            )
        p.mkdir(parents=True, exist_ok=True)

    def require(self, *names: str) -> None:
        """Raise a `UserError` unless this is a directory holding all `names`."""
        if not self.path.is_dir():
            raise UserError(f"no run directory at {self.path}; check the path or train first")
        missing = [n for n in names if not self.file(n).is_file()]
        if missing:
            raise UserError(
                f"{self.path} is not a complete run (missing {', '.join(missing)}); "
                "train again into it with --force, or pass --resume if training was interrupted"
            )

    # --- config -------------------------------------------------------------------------------
    def write_config(self, config: dict) -> None:
        atomic_write(self.file(CONFIG), (json.dumps(config, indent=2) + "\n").encode())

    def read_config(self) -> dict:
        self.require(CONFIG)
        try:
            config = json.loads(self.file(CONFIG).read_text())
        except (ValueError, UnicodeDecodeError):
            raise UserError(
                f"{self.file(CONFIG)} is not valid JSON; restore it or train the run again"
            ) from None
        if not isinstance(config, dict) or "model" not in config or "data" not in config:
            raise UserError(f"{self.file(CONFIG)} is not a lstmbyhand run config; train again")
        return config

    # --- tensors ------------------------------------------------------------------------------
    def write_weights(self, state_dict: dict[str, torch.Tensor], meta: dict) -> None:
        save_tensors(self.file(WEIGHTS), state_dict, meta)

    def read_weights(self) -> tuple[dict[str, torch.Tensor], dict]:
        self.require(WEIGHTS)
        return load_tensors(self.file(WEIGHTS), "weights file")

    def write_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        save_tensors(self.file(STATE), tensors, meta)

    def read_state(self) -> tuple[dict[str, torch.Tensor], dict]:
        return load_tensors(self.file(STATE), "training state")

    # --- metrics ------------------------------------------------------------------------------
    def write_metrics(self, rows: list[dict]) -> None:
        """Rewrite metrics.csv from the full history (so every epoch appears exactly once)."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, lineterminator="\n")
        w.writeheader()
        for row in rows:
            w.writerow({k: row[k] for k in METRIC_FIELDS})
        atomic_write(self.file(METRICS), buf.getvalue().encode())


def load_model_weights(model: torch.nn.Module, run: RunDir) -> dict:
    """Fill `model` from RUN/weights.safetensors; refuse weights that do not fit it exactly."""
    tensors, meta = run.read_weights()
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != got:
        raise UserError(
            f"weights in {run.file(WEIGHTS)} do not fit the model in {run.file(CONFIG)} "
            f"(expected {sorted(expected.items())}, got {sorted(got.items())}); train again"
        )
    model.load_state_dict(tensors)
    return meta
