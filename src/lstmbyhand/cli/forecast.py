"""`lstmbyhand forecast RUN --data CSV --steps N [--future CSV] [--output FILE.csv] [--plot FILE.png]`.

A run of many series forecasts each of them (the id in the first column); with quantiles every
level is a column and the plot shades the widest interval. A run with known-future covariates
needs them for the steps asked: --future FILE (the id and time columns, and those covariates).

--output and --plot never write over the command's inputs (the data file, the run's files); `-`
is stdout; devices and pipes are written in place; symlinks are followed (the file they point to
is replaced). The plot's format follows its extension (PNG without one).

The run's refit weights (refit.safetensors, from `train --refit`) are used when it has them, else
its evaluated weights; one line on stderr says which (once the forecast is written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lstmbyhand.errors import UserError


def add_parser(sub) -> None:
    p = sub.add_parser("forecast", help="forecast past the end of the data", description=__doc__)
    p.add_argument("run", help="run directory written by `lstmbyhand train`")
    p.add_argument("--data", required=True, help="CSV whose end to forecast from")
    p.add_argument("--steps", type=int, required=True, help="how many steps ahead")
    p.add_argument("--future", help="CSV or Parquet of the known-future covariates for the steps "
                   "asked (id, time and covariate columns), when the run has them")  # fmt: skip
    p.add_argument("--series", help="plot these series (ids, comma-separated; default: the "
                   "first 4)")  # fmt: skip
    p.add_argument("--output", help="write the forecast as CSV here; - for stdout (default: print)")
    p.add_argument(
        "--plot", help="write a plot of history and forecast here (.png, .svg, .pdf, ...)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from lstmbyhand.cli.threads import use_threads
    from lstmbyhand.forecast import plots
    from lstmbyhand.forecast.files import check_output, in_place, same_file, write_output
    from lstmbyhand.forecast.panel import read_future
    from lstmbyhand.forecast.recursive import pool_frame
    from lstmbyhand.forecast.restore import open_for_forecast
    from lstmbyhand.forecast.rundir import RunDir

    use_threads(None)

    if args.steps < 1:
        raise UserError(f"--steps must be a whole number ≥ 1, got {args.steps}")
    inputs = [Path(args.data), *(Path(args.run) / n for n in RunDir(args.run).own_files())]
    inputs += [Path(args.future)] if args.future else []
    if args.output:
        check_output(args.output, "--output", inputs)
    if args.plot:
        plots.check_plot(args.plot, "--plot", inputs)
        two = args.output and not in_place(args.output) and not in_place(args.plot)
        if two and same_file(Path(args.output), Path(args.plot)):
            raise UserError(f"--output and --plot are both {args.output}; give two files")
    model, settings, _, pool, used = open_for_forecast(args.run, args.data)
    many = pool.panel.layout != "single"
    future = None
    if args.future:
        time = pool.members[0].series.time_column
        future = read_future(args.future, pool.panel.id_column if many else None, time,
                             settings.future_covariates)  # fmt: skip
        if not many:
            future = {pool.members[0].series.id: next(iter(future.values()))}
    id_name = pool.panel.id_column or "series"
    frame = pool_frame(model, pool.members, args.steps, id_name, future)
    if not many:
        frame = frame.drop(columns=[id_name])
    numbers = frame.iloc[:, 2 if many else 1 :].to_numpy(dtype=np.float64)  # (rows, 1 [+ Q-1])
    if not np.isfinite(numbers).all():
        row = int(np.flatnonzero(~np.isfinite(numbers).all(axis=1))[0])
        bad = numbers[row][~np.isfinite(numbers[row])][0]
        raise UserError(
            f"the forecast is not a number at step {row % args.steps + 1} ({bad}): the model "
            f"overflowed on this data; nothing was written. Check that {args.data} is in the "
            "units the run was trained on, or train again"
        )
    text = frame.to_csv(index=False, float_format="%.10g").encode()
    if args.output:
        write_output(args.output, text, "--output", inputs)
        if args.output != "-":
            print(f"wrote {len(frame)} forecasts to {args.output}")
    else:
        sys.stdout.write(text.decode())
        sys.stdout.flush()
    if args.plot:
        plots.forecasts(panels(pool, frame, args, settings.quantiles, many), args.plot, inputs)
        to_stdout = not args.output or args.output == "-" or args.plot == "-"
        print(f"wrote the plot to {args.plot}", file=sys.stderr if to_stdout else sys.stdout)
    print(f"weights: {used}", file=sys.stderr)  # after success: a refusal stays one line
    return 0


def panels(pool, frame, args: argparse.Namespace, levels: list[float], many: bool) -> list[tuple]:
    """What `plots.forecasts` draws: per series plotted, its history, forecast and widest band."""
    import numpy as np

    from lstmbyhand.forecast.intervals import pairs

    ids = [m.series.id for m in pool.members]
    chosen = ids[:4] if not args.series else [i.strip() for i in args.series.split(",")]
    unknown = [i for i in chosen if i not in ids]
    if unknown:
        raise UserError(f"--series: no series {unknown[0]!r} in {args.data}")
    out = []
    for prep in (m for m in pool.members if m.series.id in chosen):
        series = prep.series
        rows = frame[frame.iloc[:, 0] == series.id] if many else frame
        first = 1 if many else 0
        time = series.time if series.time is not None else np.arange(len(series))
        band = None
        name = rows.columns[first + 1]  # the point forecast's column: the target's, or "value"
        widest = pairs(levels)[:1]  # the lowest and highest quantiles come first
        if widest:
            lo, hi, percent = widest[0]
            band = (f"{percent} % interval", rows[f"{name}_q{levels[lo]:g}"].to_numpy(),
                    rows[f"{name}_q{levels[hi]:g}"].to_numpy())  # fmt: skip
        title = f"{series.id + ': ' if series.id else ''}{series.target}, {args.steps} steps ahead"
        future_time = rows.iloc[:, first].to_numpy()
        out.append((title, time, series.values, future_time, rows[name].to_numpy(), band))
    return out
