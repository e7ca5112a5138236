"""Every setting of a training run in one object: CLI flags map onto its fields, config.json saves it.

`TrainSettings.check()` rejects impossible values with a `UserError` that names the flag.
`RESUMABLE` lists the fields `--resume` may change; any other difference from the run is refused.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from lstmbyhand.data import FILL_METHODS
from lstmbyhand.errors import UserError
from lstmbyhand.model import ModelConfig
from lstmbyhand.scaling import SCALINGS
from lstmbyhand.windows import check_settings

DEVICES = ("auto", "cpu", "cuda")
RESUMABLE = ("epochs", "patience", "device", "data")


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
