"""Open a finished run: rebuild the model from config.json, fill it from weights.safetensors.

    model, settings, config, prepared = open_run("runs/air", data=None)

`data` replaces the run's data file (same columns expected); the run's scaler is kept, so the
network sees inputs in the units it was trained on.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lstmbyhand.errors import UserError
from lstmbyhand.forecast.config import ModelConfig, TrainSettings
from lstmbyhand.forecast.model import Forecaster
from lstmbyhand.forecast.prepare import Prepared, load_series, prepare
from lstmbyhand.forecast.rundir import CONFIG, WEIGHTS, RunDir, load_model_weights
from lstmbyhand.forecast.scaling import Scaler


def open_run(
    path: str | Path, data: str | None = None, split: bool = True
) -> tuple[Forecaster, TrainSettings, dict, Prepared | None]:
    """The run's model (eval mode, CPU), settings, config and its data, prepared.

    split=False skips the train/val/test split (forecast and inspect only need the series).
    """
    run = RunDir(path)
    run.require(CONFIG, WEIGHTS)
    config = run.read_config()
    try:
        settings = TrainSettings.from_dict(config["settings"])
        settings.time = config["data"]["time"]  # the column actually used, even if auto-detected
        model_config = ModelConfig.from_dict(config["model"])
        scaler = Scaler.from_dict(config["scaler"])
    except (KeyError, TypeError, ValueError):
        raise UserError(
            f"{run.file(CONFIG)} is incomplete or damaged; train the run again"
        ) from None
    settings.data = str(config["data"].get("path", settings.data))  # absolute: any cwd
    if data is None and not Path(settings.data).exists():
        raise UserError(
            f"the run's data file {settings.data} is gone; pass the data with --data CSV"
        )
    with torch.random.fork_rng(devices=[]):  # construction draws random numbers: not the caller's
        model = Forecaster(model_config)
    load_model_weights(model, run)
    model.eval()
    columns = " and ".join(repr(c) for c in (settings.target, settings.time) if c)
    series = load_series(settings, data, f"the run was trained on {columns}: give a CSV with them")
    prepared = prepare(settings, series, scaler) if split else None
    if not split:
        needed = settings.window
        if len(series) < needed:
            raise UserError(
                f"{data or settings.data} has {len(series)} values; the run needs at least "
                f"{needed} (its --window) to forecast"
            )
    return model, settings, config, prepared if split else _unsplit(series, scaler, settings)


def _unsplit(series, scaler: Scaler, settings: TrainSettings) -> Prepared:
    return Prepared(series, None, scaler, {}, settings.window, settings.horizon)
