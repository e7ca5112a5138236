"""`lstmbyhand evaluate RUN [--data CSV] [--json]`: test-split accuracy against the baselines."""

from __future__ import annotations

import argparse
import json


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="test-split metrics: model, naive, seasonal naive",
                       description=__doc__)  # fmt: skip
    p.add_argument("run", help="run directory written by `lstmbyhand train`")
    p.add_argument("--data", help="CSV to evaluate on (default: the run's data file)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lstmbyhand.cli.threads import use_threads
    from lstmbyhand.forecast.evaluate import evaluate, format_table
    from lstmbyhand.forecast.restore import open_run

    use_threads(None)

    model, settings, config, prep = open_run(args.run, args.data)
    result = evaluate(model, prep, int(config.get("season") or 0))
    result["run"] = str(args.run)
    result["data"] = str(args.data or settings.data)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"{result['data']}: test split, {result['windows']} windows x horizon {result['horizon']}"
        f" = {result['points']} forecasts; season {result['season'] or 'none'}"
    )
    print(format_table(result))
    return 0
