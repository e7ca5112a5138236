"""`lstmbyhand train DATA.csv --target COL [...]`: train a forecaster into a run directory.

Every flag maps onto a `TrainSettings` field; flags left out take its defaults (or, with --resume,
the run's own settings).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import fields
from pathlib import Path

from lstmbyhand.errors import UserError
from lstmbyhand.forecast.config import CALENDAR, CELLS, DEVICES, TrainSettings


def names(text: str) -> list[str]:
    """A comma-separated list of column (or feature) names."""
    return [n.strip() for n in text.split(",") if n.strip()]


def levels(text: str) -> list[float]:
    """A comma-separated list of quantile levels, e.g. 0.1,0.5,0.9."""
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, e.g. 0.1,0.5,0.9, got {text!r}"
        ) from None


FLAGS = {  # field: (type, help)
    "time": (str, "time column; '' for none (default: the first column, when it holds dates or "
             "numbers)"),
    "id": (str, "series id column of long data, many series one below the other (default: "
           "unique_id when the file has Nixtla's unique_id, ds, y)"),
    "past_covariates": (names, "columns observed up to each origin, e.g. price,stock (not "
                        "known ahead: held at the last value when forecasting on; default none)"),
    "future_covariates": (names, "columns known ahead of time, e.g. promo,holiday (forecast "
                          "needs them for the steps asked: --future FILE; default none)"),
    "calendar": (names, f"calendar features of the time column, known ahead: "
                 f"{', '.join(CALENDAR)} (default none)"),
    "quantiles": (levels, "quantile levels for prediction intervals, with 0.5 (the point "
                  "forecast), e.g. 0.1,0.5,0.9; trained on the pinball loss (default: none, a "
                  "point forecast on the squared error)"),
    "window": (int, "input window length"),
    "horizon": (int, "steps forecast at once"),
    "hidden": (int, "LSTM hidden size"),
    "layers": (int, "stacked LSTM layers"),
    "dropout": (float, "dropout between stacked layers"),
    "cell": (names, f"LSTM cell variants, comma-separated: {', '.join(CELLS)} (peepholes, f = 1 - i, "
             "layer normalization; docs/variants.md; default none: the plain LSTM)"),
    "ablate": (names, "parts of the cell removed, comma-separated: input_gate, forget_gate, "
               "output_gate, input_activation, output_activation (default none)"),
    "forget_bias": (float, "the forget gate's bias at initialization; 1: Keras' unit_forget_bias"),
    "recurrent_dropout": (float, "dropout on h_{t-1} in the cell, one mask per window; training "
                          "only"),
    "zoneout": (float, "chance that a unit keeps its previous h and c at a step in training; "
                "the expectation when evaluating and forecasting"),
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
    p.add_argument("data", help="CSV or Parquet file with named columns")
    p.add_argument("--target", help=TARGET_HELP)
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
    if "target" not in values:
        values["target"] = default_target(args.data)
    return TrainSettings(**values), given - {"data"}


TARGET_HELP = ("the column to forecast; A,B,C: several columns, one series each (wide data); "
               "not needed for Nixtla's unique_id, ds, y")  # fmt: skip


def default_target(data: str) -> str:
    """ "y" for a file with Nixtla's unique_id, ds and y; else --target is required."""
    from lstmbyhand.forecast.data import column_names
    from lstmbyhand.forecast.panel import NIXTLA

    if set(NIXTLA) <= set(column_names(data)):
        return "y"
    raise UserError(
        "the following arguments are required: --target (only a file with the columns "
        "unique_id, ds, y needs none)"
    )


def default_out(data: str, target: str) -> str:
    """runs/<file>-<target>, the names reduced to safe characters: always a folder inside runs/."""
    name = re.sub(r"[^\w.-]+", "_", f"{Path(data).stem}-{target}").strip("._") or "run"
    return str(Path("runs") / name)


def run(args: argparse.Namespace) -> int:
    from lstmbyhand.forecast.data import readable

    settings, given = settings_from_args(args)
    readable(settings.data)  # a missing or unreadable file: refused before torch is imported
    from lstmbyhand.cli.threads import use_threads
    from lstmbyhand.forecast import distributed
    from lstmbyhand.forecast.model import cell_options
    from lstmbyhand.forecast.train import train

    use_threads(args.threads)
    cell_options(settings.model)  # a cell the LSTM refuses: one line now, not after the baselines
    out = args.out or default_out(args.data, settings.target)
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
    if result.skipped:
        from lstmbyhand.forecast.pool import skipped_line

        print(f"lstmbyhand train: warning: {skipped_line(settings, result.skipped)}",
              file=sys.stderr)  # fmt: skip
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
