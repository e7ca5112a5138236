"""`lstmbyhand train DATA.csv --target COL [...]`: train a forecaster into a run directory.

Every flag maps onto a `TrainSettings` field; flags left out take its defaults (or, with --resume,
the run's own settings).
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import fields
from pathlib import Path

from lstmbyhand.forecast.config import DEVICES, TrainSettings

FLAGS = {  # field: (type, help)
    "time": (str, "time column; '' for none (default: the first column, when it holds dates or "
             "numbers)"),
    "window": (int, "input window length"),
    "horizon": (int, "steps forecast at once"),
    "hidden": (int, "LSTM hidden size"),
    "layers": (int, "stacked LSTM layers"),
    "dropout": (float, "dropout between stacked layers"),
    "epochs": (int, "maximum epochs"),
    "batch_size": (int, "windows per batch"),
    "lr": (float, "Adam learning rate"),
    "val_fraction": (float, "share of the series for validation"),
    "test_fraction": (float, "share of the series for testing"),
    "patience": (int, "epochs without a better validation loss before stopping; 0: never"),
    "season": (int, "season length for the seasonal-naive baseline and MASE; 0: none "
               "(default: from the time column's frequency, e.g. 12 for monthly data)"),
    "fill": (str, "missing values: none (refuse), interpolate, ffill, drop"),
    "scaling": (str, "window: scale each window by its own mean and spread; last: "
                "predict the change from the last value; global: the train part's mean and std"),
    "base": (str, "statistical forecast the network learns the residual of: median (of AutoETS, "
             "AutoARIMA, AutoTheta), mean, one of them, or none"),
    "multistep": (str, "horizon > 1: recursive (one step, fed back in) or direct (all at once)"),
    "clip": (float, "clip the gradient norm to this; 0: no clipping"),
    "seed": (int, "random seed; the same seed gives the same run on the same machine"),
    "device": (str, "auto, cpu or cuda"),
}  # fmt: skip


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a forecaster on a CSV column", description=__doc__)
    p.add_argument("data", help="CSV file with a header row")
    p.add_argument("--target", required=True, help="the column to forecast")
    defaults = {f.name: f.default for f in fields(TrainSettings)}
    for name, (kind, text) in FLAGS.items():
        extra = {"choices": DEVICES} if name == "device" else {}
        text = text if "default" in text else f"{text} (default {defaults[name]})"
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None, help=text,
                       **extra)  # fmt: skip
    p.add_argument("--out", help="run directory (default: runs/<file>-<target>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--force", action="store_true", help="replace the run in --out")
    p.add_argument("--refit", action="store_true",
                   help="after training, retrain on the whole series for the best epoch count "
                   "(refit.safetensors, which `forecast` then uses); with --resume on a finished "
                   "run: refit it")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=int, help="torch CPU threads (default 1, or OMP_NUM_THREADS)")
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> tuple[TrainSettings, set[str]]:
    """The settings, and the names of those the user gave explicitly."""
    given = {f.name for f in fields(TrainSettings) if getattr(args, f.name, None) is not None}
    values = {name: getattr(args, name) for name in given}
    return TrainSettings(**values), given - {"data"}


def default_out(data: str, target: str) -> str:
    """runs/<file>-<target>, the names reduced to safe characters: always a folder inside runs/."""
    name = re.sub(r"[^\w.-]+", "_", f"{Path(data).stem}-{target}").strip("._") or "run"
    return str(Path("runs") / name)


def run(args: argparse.Namespace) -> int:
    from lstmbyhand.cli.threads import use_threads
    from lstmbyhand.forecast import distributed
    from lstmbyhand.forecast.train import train

    use_threads(args.threads)
    settings, given = settings_from_args(args)
    out = args.out or default_out(args.data, args.target)
    distributed.init_from_env(settings.device)  # under torchrun: join the process group
    try:
        result = train(settings, out, resume=args.resume, force=args.force, quiet=args.quiet,
                       given=given, refit=args.refit)  # fmt: skip
    finally:
        distributed.shutdown()
    if distributed.rank_and_size()[0] != 0 or int(os.environ.get("RANK", "0")) != 0:
        return 0
    if result.removed:
        print(f"--force: removed the old run's {', '.join(result.removed)} from {result.run}")
    p = result.progress
    why = "early stop" if result.stopped_early else "epoch limit"
    best = f"best validation loss {p.best_val:.4g} at epoch {p.best_epoch}"
    if p.best_val == float("inf"):
        best = f"no validation part (--val-fraction 0): kept epoch {p.best_epoch}, the last"
    print(f"trained {p.epoch} epochs ({why}); {best}; run saved in {result.run}")
    if result.world_size > 1:
        print(f"{result.world_size} processes (DistributedDataParallel); weights identical on all")
    if result.refit:
        from lstmbyhand.forecast.refit import describe

        print(f"{describe(result.refit)}: refit.safetensors in {result.run} (forecast uses it)")
    print(f"next: lstmbyhand evaluate {result.run}")
    return 0
