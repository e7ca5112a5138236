"""`lstmbyhand evaluate RUN [--data CSV] [--json] [--no-baselines]`: test-split accuracy.

The model against naive, seasonal naive and statsforecast's AutoETS, AutoARIMA and AutoTheta
(fitted on train + validation, scored on the same test points); the last line names the winner.
"""

from __future__ import annotations

import argparse
import json

from lstmbyhand.errors import UserError


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="test-split metrics: model against naive and statistical "
                       "baselines", description=__doc__)  # fmt: skip
    p.add_argument("run", help="run directory written by `lstmbyhand train`")
    p.add_argument("--data", help="CSV to evaluate on (default: the run's data file)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--no-baselines", dest="baselines", action="store_false",
                   help="skip AutoETS, AutoARIMA and AutoTheta (naive ones stay)")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lstmbyhand.cli.threads import use_threads
    from lstmbyhand.forecast.evaluate import evaluate, format_table, verdict
    from lstmbyhand.forecast.restore import open_run

    use_threads(None)

    model, settings, config, prep = open_run(args.run, args.data)
    if prep.parts.n_test == 0:  # exit 2: nothing was scored; no script may take it for a score
        raise UserError(
            f"nothing held out to score: {args.run} was trained with --test-fraction 0 (every "
            "value is for training or validation); run `lstmbyhand backtest` to measure it"
        )
    result = evaluate(model, prep, config.season, baselines=args.baselines)
    result["run"] = str(args.run)
    result["data"] = str(args.data or settings.data)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"{result['data']}: test split, {result['windows']} windows x horizon {result['horizon']}"
        f" = {result['points']} forecasts; season {result['season'] or 'none'}; "
        f"base {result['base']}"
    )
    print(format_table(result))
    print(verdict(result))
    return 0
