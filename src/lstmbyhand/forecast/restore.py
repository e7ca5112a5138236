"""Open a finished run: rebuild the model from config.json, fill it from weights.safetensors.

    model, settings, config, prepared = open_run("runs/air", data=None)
    config.settings, config.season, config.scaler ...     # the typed `RunConfig`
    model, settings, config, pool = open_pool("runs/stores")  # any run: every series (pool.py)

Every file is checked before use (integrity, run id, format, dtypes, shapes, finite weights; see
rundir.py). `data` replaces the run's data file (same columns expected); the run's scaler is kept,
so the network sees inputs in the units it was trained on. A series whose id the run does not
know is refused (its scaler would be a guess); the run's series missing from `data` are left out.
"""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import torch

from lstmbyhand.errors import UserError
from lstmbyhand.forecast.baselines import adopt
from lstmbyhand.forecast.config import RunConfig, TrainSettings
from lstmbyhand.forecast.data import read_data
from lstmbyhand.forecast.model import Forecaster
from lstmbyhand.forecast.panel import Panel
from lstmbyhand.forecast.pool import Pool, Scalers, load_panel, prepare_pool, run_scalers
from lstmbyhand.forecast.prepare import Prepared, covariates_of
from lstmbyhand.forecast.rundir import CONFIG, REFIT, SERIES, WEIGHTS, RunDir, load_model_weights


def open_run(
    path: str | Path, data: str | None = None, split: bool = True
) -> tuple[Forecaster, TrainSettings, RunConfig, Prepared]:
    """The run's model (eval mode, CPU), settings, config and its one series, prepared.

    split=False skips the train/val/test split (forecast and inspect only need the series).
    A run of many series: `open_pool`.
    """
    model, settings, config, pool = open_pool(path, data, split)
    if len(pool.members) > 1 or pool.panel.layout != "single":
        raise UserError(f"{path} is a run of many series; open it with open_pool")
    return model, settings, config, pool.members[0]


def open_pool(
    path: str | Path, data: str | None = None, split: bool = True, scalers: Scalers | None = None
) -> tuple[Forecaster, TrainSettings, RunConfig, Pool]:
    """The run's model (eval mode, CPU), settings, config and every series, prepared with the
    run's scalers (or `scalers`, by id: the refit's)."""
    run = RunDir(path)
    run.require(CONFIG, WEIGHTS)
    config = RunConfig.from_dict(run.read_config(), str(run.file(CONFIG)))
    settings = config.settings
    settings.time = config.data.get("time")  # the column actually used, even if auto-detected
    if settings.time is None:
        settings.time = ""  # none was used: do not guess one from other data
    try:
        scalers = scalers or run_scalers(config, str(run.file(CONFIG)))
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
    columns = [settings.id, settings.target, settings.time, *settings.past_covariates,
               *settings.future_covariates]  # fmt: skip
    named = " and ".join(repr(c) for c in columns if c)
    panel = kept_series(run, settings.data, config) if split and data is None else None
    if panel is None:  # not kept, or the file changed since: parsed from the file (pandas)
        panel = load_panel(settings, data, f"the run was trained on {named}: give a file with them")
    panel = known_series(panel, scalers, data or settings.data, config)
    if not split:
        short = [x for x in panel.series if len(x) < settings.window]
        if short:
            which = f" (series {short[0].id!r})" if short[0].id else ""
            raise UserError(
                f"{data or settings.data} has {len(short[0])} values{which}; the run needs at "
                f"least {settings.window} (its --window) to forecast"
            )
        members = [_unsplit(x, scalers[x.id], settings) for x in panel.series]
        return model, settings, config, Pool(members, panel, skipped_of(config))
    pool = prepare_pool(settings, panel, scalers)
    pool.skipped = skipped_of(config)
    adopt(run.read_statistical(), pool.members)  # train's statistical forecasts: no refit
    for member in pool.members:
        if config.season >= member.parts.n_train:
            raise UserError(
                f"{data or settings.data} leaves {member.parts.n_train} values for the training "
                f"part, not more than the run's season {config.season}; use a longer series"
            )
    return model, settings, config, pool


def kept_series(run: RunDir, path: str, config: RunConfig) -> Panel | None:
    """The series `train` parsed from `path` (parsed.py), when the run kept them and the file's
    bytes are still the ones it read; None: parse the file (and always with calendar features,
    which need pandas dates)."""
    if config.model.calendar or not run.file(SERIES).is_file():
        return None
    digest = hashlib.sha256(read_data(path)).hexdigest()  # read_data's errors: the file's
    return run.read_series(path, digest)


def known_series(panel: Panel, scalers: Scalers, where: str, config: RunConfig) -> Panel:
    """The panel's series that the run knows (by id); an id it does not know is refused."""
    if panel.layout == "single" and config.panel is None:
        panel.series[0].id = ""
        return panel
    skipped = config.panel.get("skipped", {}) if config.panel else {}
    panel.series = [x for x in panel.series if x.id not in skipped]  # too short when trained
    unknown = [x.id for x in panel.series if x.id not in scalers]
    if unknown:
        known = ", ".join(repr(k) for k in list(scalers)[:8]) + (
            ", ..." if len(scalers) > 8 else ""
        )
        raise UserError(
            f"series {unknown[0]!r} in {where} is not one the run was trained on "
            f"({len(unknown)} unknown); the run knows {known}: give only those series"
        )
    return panel


def skipped_of(config: RunConfig) -> dict[str, int]:
    """The series the run skipped as too short (id -> length)."""
    return dict(config.panel.get("skipped", {})) if config.panel else {}


def open_for_forecast(
    path: str | Path, data: str | None = None
) -> tuple[Forecaster, TrainSettings, RunConfig, Pool, str]:
    """`open_pool` without a split, with the refit weights (and their scalers, fitted on the whole
    series) when the run has them; the last item says which weights were used, in words."""
    from lstmbyhand.forecast.refit import describe, load_refit

    run = RunDir(path)
    model, settings, config, pool = open_pool(path, data, split=False)
    if not run.file(REFIT).is_file():
        return (
            model,
            settings,
            config,
            pool,
            f"{WEIGHTS} (trained on the first {_trained_on(config)}, not refit)",
        )
    columns = len(settings.past_covariates) + len(settings.future_covariates)
    scalers = load_refit(model, run, columns)
    model.eval()
    pool = Pool([_unsplit(m.series, scalers[m.series.id], settings) for m in pool.members],
                pool.panel, {})  # fmt: skip
    meta = run.read_refit()[1]
    return model, settings, config, pool, f"{REFIT} ({describe(meta)})"


def _trained_on(config: RunConfig) -> str:
    """How many values of each series the evaluated weights were trained on, in words."""
    series = config.panel["series"] if config.panel else []
    if len(series) <= 1:
        return f"{config.split['n_train']} values"
    sizes = sorted(int(row["split"]["n_train"]) for row in series)
    span = str(sizes[0]) if sizes[0] == sizes[-1] else f"{sizes[0]}-{sizes[-1]}"
    return f"{span} values of each of the {len(sizes)} series"


def _regular(path: str) -> bool:
    try:
        return stat.S_ISREG(Path(path).stat().st_mode)
    except OSError:
        return False


def _unsplit(series, scalers, settings: TrainSettings) -> Prepared:
    season = int(settings.season or 0)
    scaler, covariate_scaler = scalers
    covariates, _ = covariates_of(settings, series, len(series), covariate_scaler)
    return Prepared(series, None, scaler, {}, settings.window, settings.horizon, settings.base, season,
                    settings.outputs, covariates, covariate_scaler)  # fmt: skip
