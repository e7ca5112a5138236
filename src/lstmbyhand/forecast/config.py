"""Every setting of a training run in one object: CLI flags map onto its fields, config.json saves it.

`TrainSettings.check()` rejects impossible values with a `UserError` that names the flag.
`RESUMABLE` lists the fields `--resume` may change; any other difference from the run is refused.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from lstmbyhand.errors import UserError

DEVICES = ("auto", "cpu", "cuda")
FILL_METHODS = ("none", "interpolate", "ffill", "drop")  # how data.py treats missing values
SCALINGS = ("global", "last", "window")  # scaling.py's kinds

RESUMABLE = ("epochs", "patience", "device", "data")


def check_settings(window: int, horizon: int, val_fraction: float, test_fraction: float) -> None:
    """Reject settings no split can satisfy, naming the setting and the range it must be in."""
    if not isinstance(window, int) or window < 1:
        raise UserError(f"window must be a whole number ≥ 1, got {window!r}; pass e.g. --window 12")
    if not isinstance(horizon, int) or horizon < 1:
        raise UserError(
            f"horizon must be a whole number ≥ 1, got {horizon!r}; pass e.g. --horizon 1"
        )
    for name, value in (("val-fraction", val_fraction), ("test-fraction", test_fraction)):
        if not 0.0 < value < 1.0:
            raise UserError(f"--{name} must be between 0 and 1 (exclusive), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise UserError(
            f"--val-fraction + --test-fraction must be below 1 to leave data for training, got "
            f"{val_fraction} + {test_fraction} = {val_fraction + test_fraction:g}"
        )


@dataclass(frozen=True)
class ModelConfig:
    """The settings that fix the model's shape."""

    window: int = 12
    horizon: int = 1
    hidden: int = 32
    layers: int = 1
    dropout: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return cls(
            int(d["window"]),
            int(d["horizon"]),
            int(d["hidden"]),
            int(d["layers"]),
            float(d["dropout"]),
        )


@dataclass
class TrainSettings:
    """A training run's settings; the defaults are the CLI's defaults."""

    data: str
    target: str
    time: str | None = None
    window: int = 12
    horizon: int = 1
    hidden: int = 32
    layers: int = 1
    dropout: float = 0.0
    epochs: int = 300
    batch_size: int = 32
    lr: float = 0.005
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    patience: int = 30
    season: int | None = None  # None: from the time column's frequency (12 for monthly), else 0
    fill: str = "none"
    scaling: str = "window"
    clip: float = 1.0
    seed: int = 0
    device: str = "auto"

    @property
    def model(self) -> ModelConfig:
        return ModelConfig(self.window, self.horizon, self.hidden, self.layers, self.dropout)

    def check(self) -> None:
        """Raise a `UserError` naming the first impossible setting."""
        check_settings(self.window, self.horizon, self.val_fraction, self.test_fraction)
        positive_int = {"hidden": self.hidden, "layers": self.layers, "epochs": self.epochs}
        positive_int["batch-size"] = self.batch_size
        for flag, value in positive_int.items():
            if not isinstance(value, int) or value < 1:
                raise UserError(f"--{flag} must be a whole number ≥ 1, got {value!r}")
        for flag, value in {"patience": self.patience, "seed": self.seed}.items():
            if not isinstance(value, int) or value < 0:
                raise UserError(f"--{flag} must be a whole number ≥ 0, got {value!r}")
        if self.season is not None and (not isinstance(self.season, int) or self.season < 0):
            raise UserError(f"--season must be a whole number ≥ 0 (0: none), got {self.season!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"--lr must be a positive number, got {self.lr}; try --lr 0.005")
        if not (math.isfinite(self.dropout) and 0.0 <= self.dropout < 1.0):
            raise UserError(f"--dropout must be in [0, 1), got {self.dropout}")
        if not (math.isfinite(self.clip) and self.clip >= 0.0):
            raise UserError(f"--clip must be ≥ 0 (0: no clipping), got {self.clip}")
        choices = {"fill": (self.fill, FILL_METHODS), "scaling": (self.scaling, SCALINGS)}
        choices["device"] = (self.device, DEVICES)
        for flag, (value, allowed) in choices.items():
            if value not in allowed:
                raise UserError(f"--{flag} must be one of {', '.join(allowed)}, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
