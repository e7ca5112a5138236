"""`lstmbyhand inspect RUN --data CSV [--plot FILE.png]`: gate activations over the last window.

The default plot, RUN/gates.png, is recorded in the run as lstmbyhand's own file (so
`train --force` removes it with the run); --plot follows the rules of `forecast --plot`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

GATES = ("input_gate", "forget_gate", "candidate", "output_gate", "cell", "hidden")


def add_parser(sub) -> None:
    p = sub.add_parser("inspect", help="gate heatmaps over the last window", description=__doc__)
    p.add_argument("run", help="run directory written by `lstmbyhand train`")
    p.add_argument("--data", required=True, help="CSV whose last window to look at")
    p.add_argument("--plot", help="plot to write, .png, .svg, .pdf, ... (default: RUN/gates.png)")
    p.add_argument("--series", help="the series to look at, by id (default: the first)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    import numpy as np
    import torch

    from lstmbyhand.cli.threads import use_threads
    from lstmbyhand.errors import UserError
    from lstmbyhand.forecast import plots
    from lstmbyhand.forecast.restore import open_pool
    from lstmbyhand.forecast.rundir import RunDir

    use_threads(None)

    rundir = RunDir(args.run)
    inputs = [Path(args.data), *(rundir.path / n for n in rundir.own_files())]
    if args.plot:
        plots.check_plot(args.plot, "--plot", inputs)
    model, settings, _, pool = open_pool(args.run, args.data, split=False)
    ids = [m.series.id for m in pool.members]
    if args.series is not None and args.series not in ids:
        raise UserError(f"--series: no series {args.series!r} in {args.data}; it has {ids[:8]}")
    prep = pool.members[ids.index(args.series) if args.series is not None else 0]
    last = len(prep.series) - 1  # the last window whose inputs are all known (future covariates:
    if prep.covariates is not None:  # those of the step after it too)
        last = int(min(last, prep.covariates.known() - 2))
    window = replace(prep, base="none")  # the trace reads the window and its covariates only
    x = window.inputs(prep.series.values, np.array([last]))  # (1, W + W·F)
    xs = torch.as_tensor(x, dtype=torch.float32)
    traces = model.trace(xs)  # [layer][direction] -> GateTrace, fields (T, 1, H)
    which = f" of series {prep.series.id!r}" if prep.series.id else ""
    print(f"gate activations over the last {settings.window} values{which}, mean (min..max) per "
          "gate:")  # fmt: skip
    for layer, per_direction in enumerate(traces):
        trace = per_direction[0]
        maps = {g: getattr(trace, g)[:, 0].detach().cpu().double().numpy() for g in GATES}  # (T, H)
        for g, a in maps.items():
            print(f"  layer {layer} {g:<12} {a.mean():+.3f} ({a.min():+.3f}..{a.max():+.3f})")
        title = f"{settings.target}: layer {layer}, last window"
        if args.plot:
            out = args.plot if len(traces) == 1 else _suffixed(args.plot, layer)
            plots.gate_heatmaps(maps, title, out, inputs)
        else:  # the run's own file
            out = str(rundir.file("gates.png" if len(traces) == 1 else f"gates-layer{layer}.png"))
            rundir.remember(Path(out).name)
            plots.gate_heatmaps(maps, title, out, run_file=True)
        print(f"wrote {out}")
    return 0


def _suffixed(path: str, layer: int) -> str:
    stem, dot, ext = path.rpartition(".")
    return f"{stem}-layer{layer}.{ext}" if dot else f"{path}-layer{layer}"
