"""Every setting of a training run in one object: CLI flags map onto its fields, config.json saves it.

`TrainSettings.check()` rejects impossible values with a `UserError` that names the flag.
`RESUMABLE` lists the fields `--resume` may change; any other difference from the run is refused.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields

from lstmbyhand.errors import UserError

DEVICES = ("auto", "cpu", "cuda")
FILL_METHODS = ("none", "interpolate", "ffill", "drop")  # how data.py treats missing values
SCALINGS = ("global", "last", "window")  # scaling.py's kinds
STATISTICAL = ("AutoETS", "AutoARIMA", "AutoTheta")  # baselines.py's statsforecast models
BASES = ("median", "mean", *STATISTICAL, "none")  # what the network learns the residual of
MULTISTEPS = ("recursive", "direct")  # horizon > 1: one step fed back in, or all H at once
CELLS = ("peephole", "coupled", "layer_norm")  # --cell: lstmbyhand.LSTM's variant switches

# calendar features from the time column (known in the future): name -> its period, each given to
# the network as sin and cos of 2π·value/period (features.py)
CALENDAR = {"month": 12, "quarter": 4, "dayofweek": 7, "dayofyear": 366, "hour": 24, "minute": 60}

MAX_LAYERS = 64  # deeper stacks are refused up front (see ModelConfig.check_model)
RESUMABLE = ("epochs", "patience", "device", "data")


def _whole(flag: str, value: object, least: int, example: str = "") -> None:
    """A whole number ≥ least (bool is not a number here), else a `UserError` naming the flag."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        hint = f"; pass e.g. --{flag} {example}" if example else ""
        raise UserError(f"--{flag} must be a whole number ≥ {least}, got {value!r}{hint}")


def _real(flag: str, value: object) -> float:
    """A real number (int or float, not bool, not text), else a `UserError` naming the flag."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"--{flag} must be a number, got {value!r}")
    return float(value)


def check_settings(window: int, horizon: int, val_fraction: float, test_fraction: float) -> None:
    """Reject settings no split can satisfy, naming the setting and the range it must be in."""
    _whole("window", window, 1, "12")
    _whole("horizon", horizon, 1, "1")
    if not 0.0 <= _real("val-fraction", val_fraction) < 1.0:  # 0: with --patience 0 only
        raise UserError(
            f"--val-fraction must be at least 0 and below 1 (0: no validation part), got "
            f"{val_fraction}"
        )
    if not 0.0 <= _real("test-fraction", test_fraction) < 1.0:  # 0: nothing held out to test
        raise UserError(
            f"--test-fraction must be at least 0 and below 1 (0: no test part), got {test_fraction}"
        )
    if val_fraction + test_fraction >= 1.0:
        raise UserError(
            f"--val-fraction + --test-fraction must be below 1 to leave data for training, got "
            f"{val_fraction} + {test_fraction} = {val_fraction + test_fraction:g}"
        )


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _repeats(values: list[str]) -> set[str]:
    return {v for v in values if values.count(v) > 1}


def _memory_bytes() -> int:
    """Physical memory of this machine (0 when the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


@dataclass
class ModelConfig:
    """The settings that fix the model's shape (defined here once; `TrainSettings` inherits them)."""

    window: int = 12
    horizon: int = 1
    hidden: int = 16  # measured: 32 over-fits the short bundled series (docs/forecasting.md)
    layers: int = 1
    dropout: float = 0.0
    base: str = "median"  # the statistical forecast the head adds to (baselines.py); none: no base
    multistep: str = "recursive"  # recursive: the head gives 1 step, fed back in; direct: all H
    quantiles: list[float] = field(default_factory=list)  # []: a point forecast (squared error)
    past_covariates: list[str] = field(default_factory=list)  # columns observed up to the origin
    future_covariates: list[str] = field(default_factory=list)  # columns known ahead of time
    calendar: list[str] = field(default_factory=list)  # CALENDAR features of the time column
    # the cell (docs/variants.md; the defaults: the plain LSTM, as in runs from before these)
    cell: list[str] = field(default_factory=list)  # CELLS switched on
    ablate: list[str] = field(default_factory=list)  # gates or activations removed (NIG, NFG...)
    forget_bias: float = 0.0  # the forget gate's bias at initialization (1: unit_forget_bias)
    recurrent_dropout: float = 0.0  # one dropout mask per window on h_{t-1}; training only
    zoneout: float = 0.0  # each unit keeps its previous h and c with this chance; training only

    @property
    def outputs(self) -> int:
        """Forecasts per forward pass: 1 (recursive) or the horizon (direct)."""
        return 1 if self.multistep == "recursive" else self.horizon

    @property
    def features(self) -> int:
        """Covariate inputs per time step, beside the target: past, future, 2 per calendar one."""
        return len(self.past_covariates) + len(self.future_covariates) + 2 * len(self.calendar)

    @property
    def levels(self) -> int:
        """Outputs per forecast step: the quantiles, or 1 (the point forecast)."""
        return len(self.quantiles) or 1

    def parameters(self) -> int:
        """Number of weights: per layer 4H(I + H) + 8H (two biases), I = 1 + F (covariates) then
        H, plus 3H peepholes and 10H layer-norm gains and biases with those cells; head H·O·Q +
        O·Q (O = `outputs`, Q = `levels`)."""
        H, I = self.hidden, 1 + self.features
        lstm = 4 * H * (I + H) + 8 * H + (self.layers - 1) * (4 * H * 2 * H + 8 * H)
        lstm += self.layers * H * (3 * ("peephole" in self.cell) + 10 * ("layer_norm" in self.cell))
        return lstm + (H + 1) * self.outputs * self.levels

    def check_model(self) -> None:
        """Raise a `UserError` naming the first impossible shape, or one too big for this machine."""
        _whole("window", self.window, 1, "12")
        _whole("horizon", self.horizon, 1, "1")
        _whole("hidden", self.hidden, 1)
        _whole("layers", self.layers, 1)
        if self.layers > MAX_LAYERS:
            raise UserError(
                f"--layers must be at most {MAX_LAYERS}, got {self.layers}: every layer runs "
                "after the one below it, step by step, so such a stack would take hours per epoch "
                "(and plain stacked LSTMs stop learning long before)"
            )
        dropout = _real("dropout", self.dropout)
        if not (math.isfinite(dropout) and 0.0 <= dropout < 1.0):
            raise UserError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.base not in BASES:
            raise UserError(f"--base must be one of {', '.join(BASES)}, got {self.base!r}")
        if self.multistep not in MULTISTEPS:
            raise UserError(
                f"--multistep must be one of {', '.join(MULTISTEPS)}, got {self.multistep!r}"
            )
        self.check_inputs()
        self.check_cell()
        # weights, gradients, Adam's two moments, the best copy and a checkpoint copy: 6 float32 each
        need, have = 6 * 4 * self.parameters(), _memory_bytes()
        if have and need > have:
            raise UserError(
                f"--hidden {self.hidden} with --layers {self.layers} needs {self.parameters():,} "
                f"weights, at least {need / 2**30:.1f} GiB, more than this machine's "
                f"{have / 2**30:.1f} GiB; choose a smaller --hidden or --layers"
            )

    def check_inputs(self) -> None:
        """Quantiles and covariates: a `UserError` naming the flag and what it must be."""
        q = self.quantiles
        if not isinstance(q, list) or not all(_is_real(v) and 0 < v < 1 for v in q):
            raise UserError(f"--quantiles must be numbers between 0 and 1, got {q!r}")
        if q and (sorted(set(q)) != q or 0.5 not in q):
            raise UserError(
                f"--quantiles must be increasing, without repeats, and include 0.5 (the point "
                f"forecast), got {','.join(map(str, q))}; e.g. --quantiles 0.1,0.5,0.9"
            )
        names = {"past-covariates": self.past_covariates, "future-covariates":
                 self.future_covariates, "calendar": self.calendar}  # fmt: skip
        for flag, value in names.items():
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise UserError(f"--{flag} must be column names, got {value!r}")
        unknown = [c for c in self.calendar if c not in CALENDAR]
        if unknown:
            raise UserError(
                f"--calendar: unknown feature {unknown[0]!r}; choose from {', '.join(CALENDAR)}"
            )
        every = self.past_covariates + self.future_covariates
        twice = sorted(_repeats(every) | _repeats(self.calendar))
        if twice:
            raise UserError(f"covariate {twice[0]!r} is given twice; name each column once")
        if self.future_covariates or self.calendar:
            if self.multistep == "direct" and self.horizon > 1:
                raise UserError(
                    "future covariates (and --calendar) work with --multistep recursive only: "
                    "each step sees the known covariates of the step it forecasts"
                )

    def check_cell(self) -> None:
        """The cell's fields have their types and `cell` known names, else a `UserError` naming
        the flag; which values and combinations the LSTM accepts, it says itself
        (`model.cell_options`)."""
        if not isinstance(self.cell, list) or not all(isinstance(c, str) for c in self.cell):
            raise UserError(f"--cell must be names from {', '.join(CELLS)}, got {self.cell!r}")
        unknown = [c for c in self.cell if c not in CELLS]
        if unknown:
            raise UserError(
                f"--cell: unknown variant {unknown[0]!r}; choose from {', '.join(CELLS)}"
            )
        if not isinstance(self.ablate, list) or not all(isinstance(a, str) for a in self.ablate):
            raise UserError(f"--ablate must be names of gates or activations, got {self.ablate!r}")
        numbers = {"forget-bias": self.forget_bias, "recurrent-dropout": self.recurrent_dropout,
                   "zoneout": self.zoneout}  # fmt: skip
        for flag, value in numbers.items():
            if not math.isfinite(_real(flag, value)):
                raise UserError(f"--{flag} must be a finite number, got {value}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        config = cls(**{f.name: d[f.name] for f in fields(ModelConfig)})
        config.check_model()
        return config


@dataclass
class DataSource:
    """The file and the column to forecast: the two settings without a default.

    `target` "A,B,C" (no such column, but each of those): several series side by side (wide)."""

    data: str
    target: str

    @property
    def targets(self) -> list[str]:
        """The target columns: one, or several for wide data."""
        return [t.strip() for t in self.target.split(",")] if "," in self.target else [self.target]


@dataclass
class TrainSettings(ModelConfig, DataSource):
    """A training run's settings: data, target, the model's shape (`ModelConfig`), then how to train.

    The defaults are the CLI's defaults."""

    time: str | None = None
    id: str | None = None  # the series id column of long data (many series, one below the other)
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
        return ModelConfig(**{f.name: getattr(self, f.name) for f in fields(ModelConfig)})

    def check(self) -> None:
        """Raise a `UserError` naming the first impossible setting."""
        for name in ("data", "target"):
            if not isinstance(getattr(self, name), str):
                raise UserError(f"{name} must be text, got {getattr(self, name)!r}")
        if self.time is not None and not isinstance(self.time, str):
            raise UserError(f"--time must be a column name, got {self.time!r}")
        if self.id is not None and not (isinstance(self.id, str) and self.id):
            raise UserError(f"--id must be a column name, got {self.id!r}")
        check_settings(self.window, self.horizon, self.val_fraction, self.test_fraction)
        self.check_model()
        for flag in ("epochs", "batch_size"):
            _whole(flag.replace("_", "-"), getattr(self, flag), 1)
        # the backward keeps ~12 values per unit, step, layer and window of a batch (float32)
        batch = min(self.batch_size, 2**20)
        need, have = 48 * batch * self.window * self.layers * self.hidden, _memory_bytes()
        if have and need > have:
            raise UserError(
                f"--batch-size {batch} x --window {self.window} x --layers {self.layers} x "
                f"--hidden {self.hidden} needs at least {need / 2**30:.1f} GiB for one batch, more "
                f"than this machine's {have / 2**30:.1f} GiB; make one of them smaller"
            )
        _whole("patience", self.patience, 0)
        if self.val_fraction == 0 and self.patience:
            raise UserError(
                "--val-fraction 0 leaves nothing to stop early on: pass --patience 0 too, to "
                "train exactly --epochs epochs and keep the last"
            )
        _whole("seed", self.seed, 0)
        if self.seed >= 2**63:
            raise UserError(f"--seed must be below 2**63, got {self.seed}")
        if self.season is not None:
            _whole("season", self.season, 0, "12 (0: none)")
        lr, clip = _real("lr", self.lr), _real("clip", self.clip)
        if not (math.isfinite(lr) and lr > 0):
            raise UserError(f"--lr must be a positive number, got {self.lr}; try --lr 0.005")
        if not (math.isfinite(clip) and clip >= 0.0):
            raise UserError(f"--clip must be ≥ 0 (0: no clipping), got {self.clip}")
        choices = {"fill": (self.fill, FILL_METHODS), "scaling": (self.scaling, SCALINGS)}
        choices["device"] = (self.device, DEVICES)
        for flag, (value, allowed) in choices.items():
            if value not in allowed:
                raise UserError(f"--{flag} must be one of {', '.join(allowed)}, got {value!r}")

    @classmethod
    def from_dict(cls, d: dict) -> TrainSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


RUN_FORMAT = 2  # the layout of config.json and the run directory; a run of any other is refused


@dataclass
class RunConfig:
    """A run's config.json: the settings as resolved, the data it was trained on, its scaler.

    `run_id` is drawn at creation and written into every file of the run, so a file copied from
    another run is recognized. `format` is checked on load: a run of another format is refused.
    """

    run_id: str
    settings: TrainSettings
    data: dict  # path, sha256, target, time, freq, length
    split: dict  # n_train, n_val, n_test
    scaler: dict  # kind, center, scale
    season: int
    device: str
    world_size: int
    versions: dict
    format: int = RUN_FORMAT
    # many series or covariates (absent for one plain series): layout, id column, and per series
    # its id, length, split, scaler and covariate scalers; the ids skipped as too short
    panel: dict | None = None

    @property
    def model(self) -> ModelConfig:
        return self.settings.model

    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "run_id": self.run_id,
            "settings": self.settings.to_dict(),
            "model": self.model.to_dict(),
            "data": self.data,
            "split": self.split,
            "scaler": self.scaler,
            "season": self.season,
            "device": self.device,
            "world_size": self.world_size,
            "versions": self.versions,
            **({"panel": self.panel} if self.panel is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: object, where: str) -> RunConfig:
        """Check and rebuild a config read from `where`; any problem is one `UserError` naming it."""
        fix = "train the run again (or restore the file from a backup)"
        if not isinstance(d, dict):
            raise UserError(f"{where} is not a lstmbyhand run config (not a JSON object); {fix}")
        if d.get("format") != RUN_FORMAT:
            raise UserError(
                f"{where} has run format {d.get('format')!r}, this lstmbyhand reads format "
                f"{RUN_FORMAT}; {fix}"
            )
        kinds = {"run_id": str, "settings": dict, "model": dict, "data": dict, "split": dict,
                 "scaler": dict, "season": int, "device": str, "world_size": int,
                 "versions": dict}  # fmt: skip
        for key, kind in kinds.items():
            if not isinstance(d.get(key), kind) or isinstance(d.get(key), bool):
                raise UserError(f"{where}: {key!r} is missing or not a {kind.__name__}; {fix}")
        try:
            settings = TrainSettings.from_dict(d["settings"])
            settings.check()
        except (TypeError, UserError) as err:
            raise UserError(f"{where} holds impossible settings ({err}); {fix}") from None
        model, defaults = settings.model.to_dict(), ModelConfig().to_dict()  # a run from before
        if {**defaults, **d["model"]} != model or not set(d["model"]) <= set(model):  # quantiles
            raise UserError(f"{where}: 'model' disagrees with 'settings'; {fix}")
        if not isinstance(d.get("panel", {}), dict):
            raise UserError(f"{where}: 'panel' is not a JSON object; {fix}")
        if d["season"] < 0 or d["world_size"] < 1:
            raise UserError(f"{where}: 'season' or 'world_size' out of range; {fix}")
        fields_ = {k: d[k] for k in kinds if k != "model"}
        return cls(**{**fields_, "settings": settings, "panel": d.get("panel")})
