"""Refit: the run's settings, trained again on the whole series for the epoch count it chose.

    train --refit:  train (early stopping on validation picks E = the best epoch), then
                    refit: a fresh network (same seed, same settings) on every window of all N values,
                    the scaler fitted on all N, for exactly E epochs (nothing is held out to stop on).

Files, beside the evaluated ones (which the refit never touches):

    refit.safetensors        the refit weights; metadata: epochs, the scaler fitted on all N, the
                             data's length and SHA-256, kept ("network" or "base", as the evaluated
                             weights were chosen; "base": the head is zeroed the same way)
    refit-state.safetensors  the refit's resumable state after each finished epoch (epoch 0 included),
                             as checkpoint.pack writes it, plus the same targets in its metadata

Both carry the run id and digests like every tensor file of the run (rundir.py). A kill during the
refit leaves refit-state.safetensors; `train --resume` finishes the refit from it, bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lstmbyhand.errors import TrainingStopped, UserError
from lstmbyhand.forecast import checkpoint
from lstmbyhand.forecast.checkpoint import Progress
from lstmbyhand.forecast.config import TrainSettings
from lstmbyhand.forecast.data import Series
from lstmbyhand.forecast.model import Forecaster, zero_head
from lstmbyhand.forecast.optim import Adam
from lstmbyhand.forecast.pool import Pool, Scalers, scalers_from
from lstmbyhand.forecast.prepare import Prepared, covariates_of
from lstmbyhand.forecast.rundir import REFIT, REFIT_STATE, RunDir, check_layout, finite_or_refuse
from lstmbyhand.forecast.scaling import Scaler
from lstmbyhand.forecast.signals import StopSignals
from lstmbyhand.forecast.windows import Split, split_origins

TARGET_KEYS = ("epochs", "kept", "length", "sha256", "scaler")  # what a refit is a refit of


def whole(s: TrainSettings, series: Series, season: int) -> Prepared:
    """The whole series as the training part: every window of all N values, scalers fitted on
    all."""
    n = len(series)
    split = Split(n, 0, 0)
    origins = split_origins(split, s.window, s.model.outputs)  # val and test: none
    scaler = Scaler.fit(s.scaling, series.values)
    covariates, covariate_scaler = covariates_of(s, series, n)
    return Prepared(series, split, scaler, origins, s.window, s.horizon, s.base, season,
                    s.model.outputs, covariates, covariate_scaler)  # fmt: skip


def whole_pool(s: TrainSettings, pool: Pool) -> Pool:
    """Every series of the pool whole (`whole`), the skipped ones still left out."""
    members = [whole(s, m.series, pool.season) for m in pool.members]
    return Pool(members, pool.panel, pool.skipped)


def fit(
    s: TrainSettings,
    prep: Pool,
    epochs: int,
    state: tuple[dict, dict] | None = None,
    save=None,
) -> tuple[dict[str, torch.Tensor], Progress]:
    """Train a fresh `Forecaster` (seed `s.seed`) on `prep`'s training windows for `epochs` epochs.

    state: a saved (tensors, meta) to continue from; save(tensors, meta): called after epoch 0 (a
    fresh start) and after every epoch, with what `state` needs. Returns the weights and progress."""
    from lstmbyhand.forecast.train import Trainer, check_state, loaders

    torch.manual_seed(s.seed)  # the same initial weights as the evaluated run
    model = Forecaster(s.model)
    optimizer = Adam(model.parameters(), lr=s.lr)
    trainer = Trainer(model, optimizer, loaders(prep, s, 0, 1), s.clip, torch.device("cpu"))
    progress = Progress()
    if state is not None:
        tensors, meta = state
        check_state(tensors, model, optimizer, Path(REFIT_STATE))
        _, progress = checkpoint.unpack(tensors, meta, model, optimizer, REFIT_STATE)
    elif save is not None:
        save(*pack(model, optimizer, progress))
    while progress.epoch < epochs:
        epoch = progress.epoch + 1
        try:
            loss = trainer.train_epoch(epoch)
        except FloatingPointError as err:
            raise TrainingStopped(f"{err} in refit epoch {epoch}; the refit stopped") from None
        progress.epoch = epoch
        progress.history.append({"epoch": epoch, "train_loss": loss})
        if save is not None:
            save(*pack(model, optimizer, progress))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, progress


def pack(model: Forecaster, optimizer: Adam, progress: Progress) -> tuple[dict, dict]:
    """`checkpoint.pack` with the current weights as the "best" (a refit keeps its last epoch)."""
    current = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return checkpoint.pack(model, current, optimizer, progress)


def target(s: TrainSettings, pool: Pool, epochs: int, kept: str) -> dict:
    """What the refit of this run must be: the epoch count, the selection, the data, the scalers
    (one series without covariates: its scaler; else every series' scalers, by id)."""
    refit = whole_pool(s, pool)
    one = refit.members[0]
    scaler = one.scaler.to_dict() if not _many(s, pool) else refit.scalers_dict()
    length = len(one.series) if not _many(s, pool) else sum(len(m.series) for m in refit.members)
    return {"epochs": epochs, "kept": kept, "length": length, "sha256": pool.panel.sha256,
            "scaler": scaler}  # fmt: skip


def _many(s: TrainSettings, pool: Pool) -> bool:
    return pool.panel.layout != "single" or bool(s.model.features)


def is_done(run: RunDir, goal: dict) -> bool:
    """True when refit.safetensors is this run's refit for `goal` (checked; a stale one: False)."""
    if not run.file(REFIT).is_file():
        return False
    _, meta = run.read_refit()
    return {k: meta.get(k) for k in TARGET_KEYS} == goal


def refit(
    run: RunDir, s: TrainSettings, pool: Pool, goal: dict, signals: StopSignals
) -> dict[str, torch.Tensor]:
    """Refit into `run` (continuing refit-state.safetensors when it is for `goal`); rank 0 only."""
    state = None
    if run.file(REFIT_STATE).is_file():
        tensors, meta = run.read_refit_state()
        if {k: meta.get(k) for k in TARGET_KEYS} == goal:
            state = (tensors, meta)

    def save(tensors: dict, meta: dict) -> None:
        with signals.deferred():
            run.write_refit_state(tensors, {**meta, **goal})

    prep = whole_pool(s, pool)
    weights, _ = fit(s, prep, goal["epochs"], state, save)
    if goal["kept"] == "base":
        weights = zero_head(s.model, weights)
    with signals.deferred():
        run.write_refit(weights, goal)
    return weights


def load_refit(model: Forecaster, run: RunDir, covariates: int) -> Scalers:
    """Fill `model` from refit.safetensors (checked like the weights); return its scalers by
    series id (`covariates`: the covariate columns the run reads)."""
    tensors, meta = run.read_refit()
    where = run.file(REFIT)
    check_layout(tensors, model.state_dict(), where, "refit weights")
    finite_or_refuse(tensors, where, "refit weights")
    try:
        saved = meta["scaler"]
        if "series" in saved:
            scalers = scalers_from(saved["series"], covariates, str(where))
        else:
            scalers = {"": (Scaler.from_dict(saved, str(where)), None)}
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, UserError):
            raise
        raise UserError(f"{where} has no valid scaler; train --resume --refit again") from None
    model.load_state_dict(tensors)
    return scalers


def describe(meta: dict) -> str:
    return f"refit on all {meta['length']} values for {meta['epochs']} epochs"
