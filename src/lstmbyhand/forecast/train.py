"""The training loop: Adam on the mean squared error of scaled forecasts, early stopping, checkpoints.

    train(TrainSettings(data="airline.csv", target="passengers"), out="runs/air")

Per epoch: one pass over the shuffled training windows (gradient norm clipped to `clip`), the
validation loss, then -- on the main process only -- the best weights when they improved, the
training state, metrics.csv (in that order, each file atomic). Early stopping ends training after
`patience` epochs without a better validation loss (0: never). A NaN or infinite loss stops training
with the last good checkpoint kept. Ctrl-C and SIGTERM stop it the same way (see `signals.py`).
--val-fraction 0 (with --patience 0) trains exactly `epochs` epochs and keeps the last. With
`refit`, the run is then trained again on the whole series for the best epoch's count (refit.py).

Under torchrun the same loop runs on every rank (see `distributed.py`): the model is wrapped in
DistributedDataParallel. With at least as many series as ranks each rank prepares only its own
series (`pool.assign`) and a `ShardSampler` shuffles its windows, every rank taking the same number
of batches; with fewer (one series) every rank prepares all and a DistributedSampler (seeded,
`set_epoch` each epoch) gives each rank its share of the windows -- with one process the same
sampler, num_replicas=1, gives the same seeded order per epoch. The training and validation losses
are summed over ranks with all_reduce, so every rank takes the same early-stopping decision; the
series' scalers, statistical forecasts and (with a base) validation windows are gathered to rank 0,
which alone writes files and shows the progress bar; every rank's RNG state goes into the checkpoint.
"""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from lstmbyhand.errors import TrainingStopped, UserError
from lstmbyhand.forecast import checkpoint, distributed, plots
from lstmbyhand.forecast.baselines import stored
from lstmbyhand.forecast.checkpoint import Progress
from lstmbyhand.forecast.config import RESUMABLE, RunConfig, TrainSettings
from lstmbyhand.forecast.model import Forecaster, select
from lstmbyhand.forecast.optim import Adam
from lstmbyhand.forecast.parsed import pack
from lstmbyhand.forecast.pool import Pool, Windows, batches, load_panel, prepare_pool, run_scalers
from lstmbyhand.forecast.rundir import (
    CONFIG,
    LOSS_PLOT,
    STATE,
    RunDir,
    check_layout,
    finite_or_refuse,
)
from lstmbyhand.forecast.signals import STOP, StopSignals


def loss_fn(
    pred: torch.Tensor, target: torch.Tensor, levels: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error over batch and horizon, pred, target (B, H) -> (); with quantile
    levels, pred (B, H, Q), the mean pinball loss (see `errors`)."""
    return torch.mean(errors(pred, target, levels))


def errors(
    pred: torch.Tensor, target: torch.Tensor, levels: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-point losses: (ŷ - y)² for pred (B, H); for quantile forecasts pred (B, H, Q) of the
    levels q (Q,), the pinball loss

        L_q(y, ŷ_q) = max(q (y - ŷ_q), (q - 1)(y - ŷ_q))            -> (B, H, Q)
    """
    if levels is None:
        return (pred - target) ** 2
    e = target.unsqueeze(-1) - pred  # (B, H, Q)
    return torch.maximum(levels * e, (levels - 1) * e)


class Trainer:
    """One epoch of training and one validation pass; knows nothing about files."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: Adam,
        data: tuple[DataLoader, tuple[torch.Tensor, torch.Tensor]],
        clip: float,
        device: torch.device,
    ) -> None:
        self.model, self.optimizer = model, optimizer
        self.loader, (self.val_x, self.val_y) = data  # val: (K, W), (K, H), this rank's share
        self.clip, self.device = clip, device
        q = getattr(model, "module", model).config.quantiles  # type: ignore[union-attr]  # DDP's
        self.levels = torch.tensor(q, dtype=torch.float32, device=device) if q else None

    def train_epoch(self, epoch: int) -> float:
        """Mean training loss over the epoch's batches. Raises FloatingPointError on NaN/inf."""
        sampler = self.loader.sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)  # a new, seeded shuffle each epoch (same on every process)
        self.model.train()
        sums = torch.zeros(2, dtype=torch.float64, device=self.device)  # loss sum, windows
        for b, (x, y) in enumerate(self.loader, start=1):
            x, y = x.to(self.device), y.to(self.device)  # (B, W), (B, H)
            pred = self.model(x)  # (B, H [, Q])
            loss = loss_fn(pred, y) if self.levels is None else loss_fn(pred, y, self.levels)
            if not distributed.all_true(bool(torch.isfinite(loss)), self.device):  # all ranks stop
                raise FloatingPointError(f"training loss became {loss.item()} at batch {b}")
            self.optimizer.zero_grad()
            loss.backward()
            if self.clip > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
            self.optimizer.step()
            sums += torch.tensor(
                [loss.item() * len(x), len(x)], dtype=torch.float64, device=self.device
            )
        distributed.all_sum(sums)
        return (sums[0] / sums[1].clamp(min=1)).item()

    @torch.no_grad()
    def validate(self) -> float | None:
        """Mean squared error over all validation windows (summed over processes); None: there
        are none (--val-fraction 0)."""
        self.model.eval()
        x, y = self.val_x.to(self.device), self.val_y.to(self.device)
        sums = torch.zeros(2, dtype=torch.float64, device=self.device)
        if len(x):
            err = errors(self.model(x), y, self.levels)  # (K, H [, Q])
            sums[0] = err.sum().double()
            sums[1] = err.numel()
        distributed.all_sum(sums)
        if sums[1] == 0:
            return None
        loss = (sums[0] / sums[1]).item()
        if not math.isfinite(loss):
            raise FloatingPointError(f"validation loss became {loss}")
        return loss


@dataclass
class Result:
    run: Path
    progress: Progress
    stopped_early: bool
    world_size: int = 1
    removed: list[str] = field(default_factory=list)  # the old run's files `force` removed
    refit: dict | None = None  # refit.safetensors' metadata, when the run has a current refit
    skipped: dict[str, int] = field(default_factory=dict)  # series too short: id -> length


def versions() -> dict:
    import lstmbyhand

    return {"lstmbyhand": lstmbyhand.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}  # fmt: skip


def member_row(m) -> dict:
    """One series' entry in config.json's panel: its id, length, split and scalers."""
    return {"id": m.series.id, "length": len(m.series), "split": split_dict(m),
            "scaler": m.scaler.to_dict(),
            "covariates": m.covariate_scaler.to_dict() if m.covariate_scaler else None}  # fmt: skip


def in_file_order(pool: Pool, mine: list[tuple[str, object]]) -> list | None:
    """Every rank's (series id, item) pairs joined on rank 0, the items in the file's order of the
    ids; None on the other ranks. Every rank must call it (`distributed.gather`)."""
    order = {k: i for i, k in enumerate(pool.panel.ids)}
    parts = distributed.gather(mine)
    if parts is None:
        return None
    pairs = sorted((pair for part in parts for pair in part), key=lambda pair: order[pair[0]])
    return [item for _, item in pairs]


def series_rows(pool: Pool) -> list[dict] | None:
    """Every kept series' `member_row`, in the file's order, on rank 0 (None on the others);
    sharded, each rank sends its own series' rows."""
    if not pool.sharded:
        return [member_row(m) for m in pool.members]
    return in_file_order(pool, [(m.series.id, member_row(m)) for m in pool.members])


def stored_forecasts(pool: Pool) -> tuple[dict[str, np.ndarray], dict] | None:
    """`baselines.stored` of every series, on rank 0 (None on the others). Sharded, each rank
    computes its own series' forecasts; rank 0 joins them in the file's order."""
    if not pool.sharded:
        return stored(pool.members)
    stored(pool.members)  # the forecasts evaluate will ask for, computed where the series are
    mine = [(m.series.id, m.statistical) for m in pool.members]
    done = in_file_order(pool, [(k, (stat.key, stat.known)) for k, stat in mine])
    if done is None:
        return None
    shims = [
        SimpleNamespace(statistical=SimpleNamespace(key=key, known=known, cached=known), origins={})
        for key, known in done
    ]  # fmt: skip  (their forecasts are already made, and already in the cache)
    return stored(shims)  # type: ignore[arg-type]


def validation_windows(pool: Pool) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Every series' validation windows (K, ·), (K, O) in the file's order, on rank 0; None on
    the other ranks, or when there are none."""
    if not pool.sharded:
        return pool.tensors("val") if pool.count("val") else None
    mine = [(m.series.id, m.tensors("val")) for m in pool.members if len(m.origins["val"])]
    done = in_file_order(pool, mine)  # type: ignore[arg-type]
    if not done:
        return None
    return torch.cat([x for x, _ in done]), torch.cat([y for _, y in done])


def make_config(
    run_id: str,
    s: TrainSettings,
    pool: Pool,
    world_size: int,
    device: torch.device,
    rows: list[dict] | None = None,
) -> RunConfig:
    """The run's config: the data, split and scaler of its first series; with many series or
    covariates, `panel` holds every series' own (see `RunConfig.panel`). `rows`: every series'
    `member_row` (`series_rows`; default: the pool's members')."""
    rows = rows if rows is not None else [member_row(m) for m in pool.members]
    series = pool.members[0].series  # the file's, its frequency and time column
    freq = series.freq if not isinstance(series.freq, float) else float(series.freq)
    data = {"path": str(Path(s.data).resolve()), "sha256": series.sha256, "target": s.target,
            "time": series.time_column, "freq": freq, "length": rows[0]["length"]}  # fmt: skip
    panel = None
    if pool.panel.layout != "single" or s.model.features:
        panel = {"layout": pool.panel.layout, "id": pool.panel.id_column, "series": rows,
                 "skipped": pool.skipped}  # fmt: skip
    return RunConfig(run_id, s, data, rows[0]["split"], rows[0]["scaler"], int(s.season or 0),
                     str(device), world_size, versions(), panel=panel)  # fmt: skip


def split_dict(prep) -> dict:
    return {"n_train": prep.parts.n_train, "n_val": prep.parts.n_val, "n_test": prep.parts.n_test}


def read_run_config(run: RunDir) -> RunConfig:
    """The run's config.json, checked (integrity, run id, format, every field)."""
    return RunConfig.from_dict(run.read_config(), str(run.file(CONFIG)))


def check_resume(run: RunDir, s: TrainSettings, given: set[str], digest: str) -> RunConfig:
    """The saved config, if the settings the user gave match it; else a `UserError` listing them."""
    run.require(CONFIG)
    if not run.file(STATE).is_file():
        raise UserError(
            f"nothing to resume in {run.path}: no {STATE} (no epoch finished); "
            "start again with --force"
        )
    config = read_run_config(run)
    saved = config.settings.to_dict()
    wrong = [
        f"--{k.replace('_', '-')} {getattr(s, k)} (the run has {saved.get(k)})"
        for k in sorted(given)
        if k not in RESUMABLE and k in saved and getattr(s, k) != saved[k]
    ]
    if wrong:
        raise UserError(
            f"--resume with settings that differ from the run in {run.path}: {'; '.join(wrong)}; "
            "leave them out to use the run's settings, or start a new run with --out or --force"
        )
    if digest != config.data.get("sha256"):
        raise UserError(
            f"the data in {s.data} differs from the data the run in {run.path} was trained on; "
            "resume with the same file, or start a new run"
        )
    return config


def train(
    s: TrainSettings,
    out: str | Path,
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
    given: set[str] | None = None,
    refit: bool = False,
) -> Result:
    """Train (or resume) a run into `out`. `given`: the settings the user set explicitly.

    refit: then retrain on the whole series for the chosen epoch count (see refit.py); a resume
    also finishes a refit that was interrupted.

    Under torchrun (a process group is running) every rank calls this with the same arguments.
    """
    with STOP:  # a signal from here on ends with one line (see signals.py)
        run = RunDir(out)
        try:
            return _train(s, run, resume, force, quiet, given or set(), STOP, refit)
        except KeyboardInterrupt:
            raise stopped(STOP, s, run, None) from None
        finally:
            run.unlock()


def stopped(signals: StopSignals, s: TrainSettings, run: RunDir, progress: Progress | None):
    """The one line for a run stopped by a signal; the resume hint only when a resume would work
    (a state file exists). progress None: stopped outside the epoch loop."""
    during = f" during epoch {progress.epoch + 1}" if progress else ""
    if run.file(STATE).is_file():
        kept = (
            _kept(run, progress)
            if progress and progress.epoch
            else f"The last checkpoint is kept in {run.path}"
        )
        again = f"continue with: lstmbyhand train {s.data} --target {s.target} --out {run.path} --resume"
    else:
        kept = f"No epoch had finished, so {run.path} holds no checkpoint to resume from"
        again = "start again (with --force if the folder was created)"
    return TrainingStopped(f"stopped by {signals.name()}{during}. {kept}; {again}",
                           exit_code=signals.exit_code())  # fmt: skip


def _train(
    s: TrainSettings,
    run: RunDir,
    resume: bool,
    force: bool,
    quiet: bool,
    given: set[str],
    signals: StopSignals,
    refit: bool = False,
) -> Result:
    s.check()
    rank, world_size = distributed.rank_and_size()
    is_main = rank == 0
    if resume and force:
        raise UserError("--resume and --force contradict each other; pass only one")
    if refit and world_size > 1:
        raise UserError(
            "--refit runs in one process: train under torchrun without it, then run "
            "`lstmbyhand train DATA --target COL --out RUN --resume --refit` without torchrun"
        )
    if resume:
        run.require(CONFIG)
        if is_main:
            run.lock()  # before reading: nobody else may be writing the run
        saved = read_run_config(run).settings.to_dict()
        merged = {**saved, **{k: getattr(s, k) for k in given}}
        merged["data"] = s.data  # the file given now (checked against the run's by content)
        s = TrainSettings.from_dict(merged)
        s.check()
    shard = (rank, world_size) if world_size > 1 else None
    panel = load_panel(s, shard=shard)  # sharded: only this rank's series' rows (outline.py)
    config = check_resume(run, s, given, panel.sha256) if resume else None
    scalers = run_scalers(config, str(run.file(CONFIG))) if config else None
    prep = prepare_pool(s, panel, scalers, shard)
    s.season = prep.season  # resolved from the time column when not given
    lengths = prep.panel.lengths  # every series', another rank's too
    for k, n_train in prep.n_train.items():  # every kept series, another rank's too
        if s.season >= n_train:
            raise UserError(
                f"--season {s.season} is not shorter than the training part "
                f"({n_train} of {lengths[k]} values" + (f" of series {k!r}" if k else "")
                + "): no season can be seen in it; pass a smaller --season, or 0 for none"
            )  # fmt: skip
    device = distributed.choose_device(s.device)

    torch.manual_seed(s.seed)  # the same initial weights on every rank
    model = Forecaster(s.model).to(device)
    optimizer = Adam(model.parameters(), lr=s.lr)
    net = nn.parallel.DistributedDataParallel(model) if world_size > 1 else model
    trainer = Trainer(net, optimizer, loaders(prep, s, rank, world_size), s.clip, device)

    best = {k: v.detach().clone() for k, v in model.state_dict().items()}
    progress, removed = Progress(), []
    if resume:
        tensors, meta = run.read_state()
        where = run.file(STATE)
        check_state(tensors, model, optimizer, where)
        best, progress = checkpoint.unpack(tensors, meta, model, optimizer, str(where), rank)
        if is_main:
            run.check_metrics(progress.history)
    else:
        error = None
        if is_main:
            try:
                removed = run.create(force)
            except UserError as err:
                error = err
        if not distributed.all_true(error is None, device):
            raise error or UserError(f"rank 0 could not create {run.path}; see its message")
        val = trainer.validate()  # epoch 0: the untrained model, i.e. the baseline
        progress.best_val = math.inf if val is None else val
    rows, statistical = series_rows(prep), stored_forecasts(prep)  # every rank takes part
    if is_main:
        assert rows is not None and statistical is not None  # rank 0 holds every series'
        with signals.deferred():
            run.write_config(make_config(run.run_id, s, prep, world_size, device, rows).to_dict())
            run.write_weights(best, weights_meta(progress))  # after a resume: a crash may have
            run.write_metrics(progress.history)  # come between the files of the last epoch
            run.write_statistical(statistical)  # what evaluate asks of the base's models
            run.write_series(pack(prep.panel))  # the series as parsed: evaluate needs no pandas

    bar = tqdm(total=s.epochs, initial=progress.epoch, desc="train", unit="epoch",
               disable=quiet or not is_main, dynamic_ncols=True)  # fmt: skip
    try:
        while not finished(s, progress):
            best = run_epoch(trainer, model, optimizer, progress, best, run, is_main, signals)
            bar.update(1)
            row = progress.history[-1]
            bar.set_postfix(train=f"{row['train_loss']:.4g}", val=f"{row['val_loss'] or 0:.4g}",
                            best=f"{progress.best_val:.4g}@{progress.best_epoch}")  # fmt: skip
    except KeyboardInterrupt:
        raise stopped(signals, s, run, progress) from None
    finally:
        bar.close()
        if is_main and progress.history:
            with signals.deferred():
                plots.loss_curve(progress.history, run.file(LOSS_PLOT))
    if not distributed.weights_agree(model):
        raise RuntimeError(
            "the ranks ended with different weights; this is a bug, please report it"
        )
    chosen = best  # no validation part: the network (nothing to choose by)
    windows = validation_windows(prep) if s.model.base != "none" else None  # on rank 0
    if windows is not None:
        chosen = select(s.model, best, *windows)  # the network, or its base (model.py)
    if is_main and chosen is not best:
        with signals.deferred():
            run.write_weights(chosen, {"epoch": progress.best_epoch, "kept": "base"})
    stopped_early = bool(s.patience and progress.bad_epochs >= s.patience)
    done = None
    if is_main:
        kept = "network" if chosen is best else "base"
        done = refit_step(run, s, prep, progress.best_epoch, kept, refit, signals)
    return Result(run.path, progress, stopped_early, world_size, removed, done, prep.skipped)


def weights_meta(progress: Progress) -> dict:
    """weights.safetensors' metadata, as `run_epoch` writes it (so a resume rewrites the same bytes)."""
    if progress.best_epoch == 0:
        return {"epoch": 0}
    best = progress.best_val
    return {"epoch": progress.best_epoch, "val_loss": best if math.isfinite(best) else None}


def refit_step(run, s, pool, epochs, kept, asked, signals) -> dict | None:
    """Refit when `asked` or when an interrupted refit is waiting (refit-state.safetensors); drop
    a refit that no longer matches the run (e.g. after resuming with more epochs). Returns the
    refit's metadata, or None when the run has no current refit."""
    from lstmbyhand.forecast import refit as refitting
    from lstmbyhand.forecast.rundir import REFIT, REFIT_STATE

    goal = refitting.target(s, pool, epochs, kept)
    if refitting.is_done(run, goal):
        return goal
    if asked or run.file(REFIT_STATE).is_file():
        refitting.refit(run, s, pool, goal, signals)
        return goal
    if run.file(REFIT).is_file():  # stale: the run's epoch count or selection changed
        with signals.deferred():
            run.file(REFIT).unlink()
    return None


def check_state(
    tensors: dict[str, torch.Tensor], model: nn.Module, optimizer: Adam, where: Path
) -> None:
    """The state's weights and moments: the model's names, dtypes and shapes, all finite."""
    expected = {f"model.{k}": v for k, v in model.state_dict().items()}
    expected.update({f"best.{k}": v for k, v in model.state_dict().items()})
    expected.update(
        {f"optim.{k}": torch.zeros_like(v) for k, v in optimizer.state_tensors().items()}
    )
    learned = {k: v for k, v in tensors.items() if not k.startswith("rng.")}
    check_layout(learned, expected, where, "training state")
    finite_or_refuse(learned, where, "training state")


def loaders(prep: Pool, s: TrainSettings, rank: int, world_size: int):
    """This rank's training loader (shuffled per epoch) and validation share: sharded by series
    (`prep.sharded`), its own series' windows, each rank the same number of batches; otherwise
    every n-th of the shuffled windows and of the validation windows."""
    train_set = prep.dataset("train")  # (K, W), (K, H): stacked, or made batch by batch
    sampler: DistributedSampler | distributed.ShardSampler
    if prep.sharded:
        steps = distributed.all_max(len(train_set))  # the largest rank's windows, every rank's
        sampler = distributed.ShardSampler(len(train_set), steps, s.seed)
        size = steps
    else:
        sampler = DistributedSampler(train_set, world_size, rank, shuffle=True, seed=s.seed)
        size = len(train_set)
    x, y = train_set[0]
    val_x, val_y = prep.tensors("val") if prep.count("val") else (x[:0], y[:0])  # a refit
    if not prep.sharded:
        val_x, val_y = val_x[rank::world_size], val_y[rank::world_size]
    batch = min(s.batch_size, max(1, size))  # a larger batch is the same one batch
    made = batches if isinstance(train_set, Windows) else None  # its batches come made
    loader = DataLoader(train_set, batch_size=batch, sampler=sampler, collate_fn=made)
    return loader, (val_x, val_y)


def finished(s: TrainSettings, progress: Progress) -> bool:
    return progress.epoch >= s.epochs or bool(s.patience and progress.bad_epochs >= s.patience)


def run_epoch(trainer, model, optimizer, progress, best, run, is_main, signals) -> dict:
    """Train one epoch, validate, update progress and, on rank 0, the files. Returns `best`."""
    epoch = progress.epoch + 1
    start = time.perf_counter()
    try:
        train_loss = trainer.train_epoch(epoch)
        val_loss = trainer.validate()
    except FloatingPointError as err:
        raise TrainingStopped(
            f"{err} in epoch {epoch}; training stopped. {_kept(run, progress)}; "
            "try a smaller --lr or --clip 1.0"
        ) from None
    progress.epoch = epoch
    progress.history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                             "lr": optimizer.lr,
                             "seconds": round(time.perf_counter() - start, 4)})  # fmt: skip
    if val_loss is None or val_loss < progress.best_val:  # None: no validation, keep the last
        progress.best_epoch, progress.bad_epochs = epoch, 0
        progress.best_val = progress.best_val if val_loss is None else val_loss
        best = {k: v.detach().clone() for k, v in model.state_dict().items()}
    else:
        progress.bad_epochs += 1
    rng = distributed.gather_rng_states()  # every rank takes part
    if is_main:
        with signals.deferred():  # a checkpoint is never cut in half by Ctrl-C
            improved = progress.best_epoch == epoch
            weights = (best, {"epoch": epoch, "val_loss": val_loss}) if improved else None
            state = checkpoint.pack(model, best, optimizer, progress, rng)
            run.write_checkpoint(weights, state, progress.history)  # one folder fsync
    return best


def _kept(run: RunDir, progress: Progress) -> str:
    if progress.epoch == 0:
        return f"No epoch had finished, so {run.path} holds no checkpoint to resume from"
    return (
        f"The checkpoint of epoch {progress.epoch} (best: epoch {progress.best_epoch}) is kept "
        f"in {run.path}"
    )
