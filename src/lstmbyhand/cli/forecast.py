"""`lstmbyhand forecast RUN --data CSV --steps N [--output FILE.csv] [--plot FILE.png]`.

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
    from lstmbyhand.forecast.recursive import forecast_frame
    from lstmbyhand.forecast.restore import open_for_forecast
    from lstmbyhand.forecast.rundir import RunDir

    use_threads(None)

    if args.steps < 1:
        raise UserError(f"--steps must be a whole number ≥ 1, got {args.steps}")
    inputs = [Path(args.data), *(Path(args.run) / n for n in RunDir(args.run).own_files())]
    if args.output:
        check_output(args.output, "--output", inputs)
    if args.plot:
        plots.check_plot(args.plot, "--plot", inputs)
        two = args.output and not in_place(args.output) and not in_place(args.plot)
        if two and same_file(Path(args.output), Path(args.plot)):
            raise UserError(f"--output and --plot are both {args.output}; give two files")
    model, settings, _, prep, used = open_for_forecast(args.run, args.data)
    frame = forecast_frame(model, prep, args.steps)
    values = frame.iloc[:, 1].to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        first = int(np.flatnonzero(~np.isfinite(values))[0])
        raise UserError(
            f"the forecast is not a number at step {first + 1} ({values[first]}): the model "
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
        series = prep.series
        time = series.time if series.time is not None else range(len(series))
        title = f"{settings.target}: {args.steps} steps ahead"
        plots.forecast(time, series.values, frame.iloc[:, 0].to_numpy(), values, title, args.plot,
                       inputs)  # fmt: skip
        to_stdout = not args.output or args.output == "-" or args.plot == "-"
        print(f"wrote the plot to {args.plot}", file=sys.stderr if to_stdout else sys.stdout)
    print(f"weights: {used}", file=sys.stderr)  # after success: a refusal stays one line
    return 0
