"""`lstmbyhand forecast RUN --data CSV --steps N [--output FILE.csv] [--plot FILE.png]`."""

from __future__ import annotations

import argparse
import sys

from lstmbyhand.errors import UserError


def add_parser(sub) -> None:
    p = sub.add_parser("forecast", help="forecast past the end of the data", description=__doc__)
    p.add_argument("run", help="run directory written by `lstmbyhand train`")
    p.add_argument("--data", required=True, help="CSV whose end to forecast from")
    p.add_argument("--steps", type=int, required=True, help="how many steps ahead")
    p.add_argument("--output", help="write the forecast as CSV here (default: print it)")
    p.add_argument("--plot", help="write a plot of history and forecast here (PNG)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lstmbyhand.cli.threads import use_threads
    from lstmbyhand.forecast import plots
    from lstmbyhand.forecast.recursive import forecast_frame
    from lstmbyhand.forecast.restore import open_run

    use_threads(None)

    if args.steps < 1:
        raise UserError(f"--steps must be a whole number ≥ 1, got {args.steps}")
    model, settings, _, prep = open_run(args.run, args.data, split=False)
    frame = forecast_frame(model, prep, args.steps)
    if args.output:
        try:
            frame.to_csv(args.output, index=False, float_format="%.10g")
        except OSError as err:
            raise UserError(
                f"cannot write {args.output} ({err.strerror}); check the path"
            ) from None
        print(f"wrote {len(frame)} forecasts to {args.output}")
    else:
        frame.to_csv(sys.stdout, index=False, float_format="%.10g")
    if args.plot:
        series = prep.series
        time = series.time if series.time is not None else range(len(series))
        title = f"{settings.target}: {args.steps} steps ahead"
        plots.forecast(time, series.values, frame.iloc[:, 0].to_numpy(), frame.iloc[:, 1].to_numpy(),
                       title, args.plot)  # fmt: skip
        print(f"wrote the plot to {args.plot}", file=sys.stderr if not args.output else sys.stdout)
    return 0
