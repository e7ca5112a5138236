"""`lstmbyhand backtest DATA.csv --target COL --folds K [train flags]`: rolling-origin evaluation.

K folds whose test parts tile the end of the series; each fold trains the network and fits the
statistical models afresh on the data before its test part (see `forecast/backtest.py`). Prints
each fold's MAE per forecaster, then the metrics pooled over every fold's test points.
"""

from __future__ import annotations

import argparse
import json

from lstmbyhand.cli.train import FLAGS, TARGET_HELP, default_out, settings_from_args


def add_parser(sub) -> None:
    p = sub.add_parser("backtest", help="rolling-origin evaluation: K folds, each trained afresh",
                       description=__doc__)  # fmt: skip
    p.add_argument("data", help="CSV or Parquet file with named columns")
    p.add_argument("--target", help=TARGET_HELP)
    p.add_argument("--folds", type=int, default=3, help="rolling origins (default 3)")
    for name, (kind, text) in FLAGS.items():
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None, help=text)
    p.add_argument(
        "--out", help="directory for the folds' runs (default: runs/<file>-<target>-backtest)"
    )
    p.add_argument("--force", action="store_true", help="replace the folds' runs in --out")
    p.add_argument("--no-baselines", dest="baselines", action="store_false",
                   help="skip AutoETS, AutoARIMA and AutoTheta")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--threads", type=int, help="torch CPU threads (default 1, or OMP_NUM_THREADS)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lstmbyhand.cli.threads import use_threads
    from lstmbyhand.forecast.backtest import backtest
    from lstmbyhand.forecast.evaluate import format_table, verdict
    from lstmbyhand.forecast.model import cell_options

    use_threads(args.threads)
    settings, _ = settings_from_args(args)
    settings.check()
    cell_options(settings.model)  # a cell the LSTM refuses: one line before the first fold
    out = args.out or default_out(args.data, settings.target) + "-backtest"
    result = backtest(settings, args.folds, out, args.baselines, args.force)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    names = list(result["pooled"])
    print(f"{'fold':<6}{'test values':>14}" + "".join(f"{n:>16}" for n in names) + "   (MAE)")
    for fold in result["folds"]:
        first, last = fold["test"]
        maes = "".join(f"{fold['metrics'][n]['mae']:>16.4g}" for n in names)
        print(f"{fold['fold']:<6}{f'{first}..{last}':>14}" + maes)
    print(f"pooled over {len(result['folds'])} folds, horizon {result['horizon']}; refit: "
          f"{result['refit']}")  # fmt: skip
    print(format_table({"metrics": result["pooled"]}))
    print(verdict({"metrics": result["pooled"], "best": result["best"]}))
    return 0
