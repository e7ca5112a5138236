"""`lstmbyhand evaluate RUN [--data CSV] [--json] [--no-baselines]`: test-split accuracy.

The model against naive, seasonal naive and statsforecast's AutoETS, AutoARIMA and AutoTheta
(fitted on train + validation, scored on the same test points); the last line names the winner.
A run of many series: each series' MAE per forecaster, then the metrics over all their test
points. With quantiles: each interval's coverage and width and the quantile loss, beside
statsforecast's AutoETS / AutoARIMA intervals at the same levels.
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
    from lstmbyhand.forecast.evaluate import (
        evaluate,
        evaluate_pool,
        format_intervals,
        format_series,
        format_series_intervals,
        format_table,
        verdict,
    )
    from lstmbyhand.forecast.restore import open_pool

    use_threads(None)

    model, settings, config, pool = open_pool(args.run, args.data)
    prep = pool.members[0]
    if prep.parts.n_test == 0:  # exit 2: nothing was scored; no script may take it for a score
        raise UserError(
            f"nothing held out to score: {args.run} was trained with --test-fraction 0 (every "
            "value is for training or validation); run `lstmbyhand backtest` to measure it"
        )
    many = pool.panel.layout != "single"
    if many:
        result = evaluate_pool(model, pool, config.season, baselines=args.baselines)
    else:
        result = evaluate(model, prep, config.season, baselines=args.baselines)
    result["run"] = str(args.run)
    result["data"] = str(args.data or settings.data)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    count = f"{len(pool.members)} series, " if many else ""
    print(
        f"{result['data']}: test split, {count}{result['windows']} windows x horizon "
        f"{result['horizon']} = {result['points']} forecasts; season {result['season'] or 'none'}"
        f"; base {result['base']}"
    )
    if many:
        print(format_series(result))
        print(f"pooled over the {len(pool.members)} series' test points:")
    print(format_table(result))
    if "intervals" in result:
        print(format_intervals(result["intervals"]))
        if many:
            print(format_series_intervals(result))
    print(verdict(result))
    if many and pool.skipped:
        print(f"not evaluated (too short): {', '.join(map(repr, pool.skipped))}")
    return 0
