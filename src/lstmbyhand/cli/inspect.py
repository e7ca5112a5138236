"""`lstmbyhand inspect RUN --data CSV [--plot FILE.png]`: gate activations over the last window."""

from __future__ import annotations

import argparse

GATES = ("input_gate", "forget_gate", "candidate", "output_gate", "cell", "hidden")


def add_parser(sub) -> None:
    p = sub.add_parser("inspect", help="gate heatmaps over the last window", description=__doc__)
    p.add_argument("run", help="run directory written by `lstmbyhand train`")
    p.add_argument("--data", required=True, help="CSV whose last window to look at")
    p.add_argument("--plot", help="PNG to write (default: RUN/gates.png)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from lstmbyhand.cli.threads import use_threads
    from lstmbyhand.forecast import plots
    from lstmbyhand.forecast.restore import open_run

    use_threads(None)

    model, settings, _, prep = open_run(args.run, args.data, split=False)
    x = prep.series.values[-settings.window :][None, :]  # (1, W)
    xs = torch.as_tensor(prep.scaler.transform(x), dtype=torch.float32)  # (1, W)
    traces = model.trace(xs)  # [layer][direction] -> GateTrace, fields (T, 1, H)
    path = args.plot or f"{args.run}/gates.png"
    print(f"gate activations over the last {settings.window} values, mean (min..max) per gate:")
    for layer, per_direction in enumerate(traces):
        trace = per_direction[0]
        maps = {g: getattr(trace, g)[:, 0].detach().cpu().double().numpy() for g in GATES}  # (T, H)
        for g, a in maps.items():
            print(f"  layer {layer} {g:<12} {a.mean():+.3f} ({a.min():+.3f}..{a.max():+.3f})")
        out = path if len(traces) == 1 else _suffixed(path, layer)
        plots.gate_heatmaps(maps, f"{settings.target}: layer {layer}, last window", out)
        print(f"wrote {out}")
    return 0


def _suffixed(path: str, layer: int) -> str:
    stem, dot, ext = path.rpartition(".")
    return f"{stem}-layer{layer}.{ext}" if dot else f"{path}-layer{layer}"
