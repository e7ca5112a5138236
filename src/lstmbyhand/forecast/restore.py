"""Open a finished run: rebuild the model from config.json, fill it from weights.safetensors.

    model, settings, config, prepared = open_run("runs/air", data=None)
    config.settings, config.season, config.scaler ...     # the typed `RunConfig`

Every file is checked before use (integrity, run id, format, dtypes, shapes, finite weights; see
rundir.py). `data` replaces the run's data file (same columns expected); the run's scaler is kept,
so the network sees inputs in the units it was trained on.
"""

from __future__ import annotations

import stat
from pathlib import Path

import torch

from lstmbyhand.errors import UserError
from lstmbyhand.forecast.config import RunConfig, TrainSettings
from lstmbyhand.forecast.model import Forecaster
from lstmbyhand.forecast.prepare import Prepared, load_series, prepare
from lstmbyhand.forecast.rundir import CONFIG, REFIT, WEIGHTS, RunDir, load_model_weights
from lstmbyhand.forecast.scaling import Scaler


def open_run(
    path: str | Path, data: str | None = None, split: bool = True
) -> tuple[Forecaster, TrainSettings, RunConfig, Prepared]:
    """The run's model (eval mode, CPU), settings, config and its data, prepared.

    split=False skips the train/val/test split (forecast and inspect only need the series).
    """
    run = RunDir(path)
    run.require(CONFIG, WEIGHTS)
    config = RunConfig.from_dict(run.read_config(), str(run.file(CONFIG)))
    settings = config.settings
    settings.time = config.data.get("time")  # the column actually used, even if auto-detected
    if settings.time is None:
        settings.time = ""  # none was used: do not guess one from other data
    try:
        scaler = Scaler.from_dict(config.scaler, str(run.file(CONFIG)))
        settings.data = str(config.data.get("path", settings.data))  # absolute: any cwd
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, UserError):
            raise
        raise UserError(
            f"{run.file(CONFIG)} is incomplete or damaged; train the run again"
        ) from None
    if data is None and not _regular(settings.data):
        raise UserError(
            f"the run's data file {settings.data} is gone (or was a pipe); pass the data with "
            "--data CSV"
        )
    with torch.random.fork_rng(devices=[]):  # construction draws random numbers: not the caller's
        model = Forecaster(config.model)
    load_model_weights(model, run)
    model.eval()
    columns = " and ".join(repr(c) for c in (settings.target, settings.time) if c)
    series = load_series(settings, data, f"the run was trained on {columns}: give a CSV with them")
    if not split:
        if len(series) < settings.window:
            raise UserError(
                f"{data or settings.data} has {len(series)} values; the run needs at least "
                f"{settings.window} (its --window) to forecast"
            )
        return model, settings, config, _unsplit(series, scaler, settings)
    prepared = prepare(settings, series, scaler)
    if config.season >= prepared.parts.n_train:
        raise UserError(
            f"{data or settings.data} leaves {prepared.parts.n_train} values for the training part, "
            f"not more than the run's season {config.season}; use a longer series"
        )
    return model, settings, config, prepared


def open_for_forecast(
    path: str | Path, data: str | None = None
) -> tuple[Forecaster, TrainSettings, RunConfig, Prepared, str]:
    """`open_run` without a split, with the refit weights (and their scaler, fitted on the whole
    series) when the run has them; the last item says which weights were used, in words."""
    from lstmbyhand.forecast.refit import describe, load_refit

    model, settings, config, prep = open_run(path, data, split=False)
    run = RunDir(path)
    if not run.file(REFIT).is_file():
        return (
            model,
            settings,
            config,
            prep,
            f"{WEIGHTS} (trained on the first {config.split['n_train']} values, not refit)",
        )
    prep.scaler = load_refit(model, run)
    model.eval()
    meta = run.read_refit()[1]
    return model, settings, config, prep, f"{REFIT} ({describe(meta)})"


def _regular(path: str) -> bool:
    try:
        return stat.S_ISREG(Path(path).stat().st_mode)
    except OSError:
        return False


def _unsplit(series, scaler: Scaler, settings: TrainSettings) -> Prepared:
    season = int(settings.season or 0)
    return Prepared(series, None, scaler, {}, settings.window, settings.horizon, settings.base, season,
                    settings.outputs)  # fmt: skip
