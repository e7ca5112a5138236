"""`lstmbyhand train DATA.csv --target COL [...]`: train a forecaster into a run directory.

Every flag maps onto a `TrainSettings` field; flags left out take its defaults (or, with --resume,
the run's own settings).
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from lstmbyhand.settings import DEVICES, TrainSettings

FLAGS = {  # field: (type, help)
    "time": (str, "time column (default: the first column, when it holds dates or numbers)"),
    "window": (int, "input window length (default 24)"),
    "horizon": (int, "steps forecast at once (default 1)"),
    "hidden": (int, "LSTM hidden size (default 32)"),
    "layers": (int, "stacked LSTM layers (default 1)"),
    "dropout": (float, "dropout between stacked layers (default 0)"),
    "epochs": (int, "maximum epochs (default 300)"),
    "batch_size": (int, "windows per batch (default 32)"),
    "lr": (float, "Adam learning rate (default 0.005)"),
    "val_fraction": (float, "share of the series for validation (default 0.15)"),
    "test_fraction": (float, "share of the series for testing (default 0.15)"),
    "patience": (int, "epochs without a better validation loss before stopping; 0: never (default 30)"),
    "season": (int, "season length for the seasonal-naive baseline and MASE; 0: none "
               "(default: from the time column's frequency, e.g. 12 for monthly data)"),
    "fill": (str, "missing values: none (refuse), interpolate, ffill, drop (default none)"),
    "scaling": (str, "last: predict the change from the last value (default); window: scale each "
                "window on its own; global: standardize with the train part's mean and std"),
    "clip": (float, "clip the gradient norm to this; 0: no clipping (default 1.0)"),
    "seed": (int, "random seed; the same seed gives the same run on the same machine (default 0)"),
    "device": (str, "auto, cpu or cuda (default auto)"),
}  # fmt: skip


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a forecaster on a CSV column", description=__doc__)
    p.add_argument("data", help="CSV file with a header row")
    p.add_argument("--target", required=True, help="the column to forecast")
    for name, (kind, text) in FLAGS.items():
        extra = {"choices": DEVICES} if name == "device" else {}
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None, help=text,
                       **extra)  # fmt: skip
    p.add_argument("--out", help="run directory (default: runs/<file>-<target>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--force", action="store_true", help="replace the run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=int, help="torch CPU threads (default 1, or OMP_NUM_THREADS)")
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> tuple[TrainSettings, set[str]]:
    """The settings, and the names of those the user gave explicitly."""
    given = {f.name for f in fields(TrainSettings) if getattr(args, f.name, None) is not None}
    values = {name: getattr(args, name) for name in given}
    return TrainSettings(**values), given - {"data"}


def run(args: argparse.Namespace) -> int:
    from lstmbyhand.commands import use_threads
    from lstmbyhand.train import train

    use_threads(args.threads)
    settings, given = settings_from_args(args)
    out = args.out or str(Path("runs") / f"{Path(args.data).stem}-{args.target}")
    result = train(settings, out, resume=args.resume, force=args.force, quiet=args.quiet,
                   given=given)  # fmt: skip
    p = result.progress
    why = "early stop" if result.stopped_early else "epoch limit"
    print(
        f"trained {p.epoch} epochs ({why}); best validation loss {p.best_val:.4g} at epoch "
        f"{p.best_epoch}; run saved in {result.run}"
    )
    print(f"next: lstmbyhand evaluate {result.run}")
    return 0
