"""`lstmbyhand bench`: our LSTM against torch.nn.LSTM, same weights, same process, alternating runs.

    lstmbyhand bench                          # the five rows of issue 4, CPU, default threads
    lstmbyhand bench --rows 50,32,64,64,1 --repeats 31
    lstmbyhand bench --device cuda            # where a GPU exists
    python -m lstmbyhand bench --no-fit       # skip the tiny-model training comparison
    lstmbyhand bench --rows 4,2,1,1,1 --no-fit --cell-steps 200   # the LSTMCell table, longer

For each row (T, B, I, H, layers) both models get the same weights (ours copied into nn.LSTM) and the
same input x (T, B, I). A *training step* is zero_grad + forward + backward of output.sum(); *inference*
is a forward pass under torch.no_grad(). Each sample times a loop calibrated to take ~`--sample-ms`;
the implementations alternate sample by sample (the first one alternating too), and the table reports
median(ours) / median(nn.LSTM): below 1.0 is faster. The machine is shared and noisy: compare ratios,
not absolute times.

The LSTMCell table times our cell against nn.LSTMCell called once per step from Python, in the
model of PyTorch's examples/time_sequence_prediction (two cells and a linear head, batch 97, float64),
with the same training step and inference pass and the same alternating medians.

The last table trains the seed's model (`LSTMbyHand(4, 1)` on its two-sequence data): our
`train_model` (whole loop compiled, `fit_adam`, when built) against nn.LSTM + torch.optim.Adam written
the usual way, in Adam steps per second.
"""

from __future__ import annotations

import argparse

from lstmbyhand.errors import UserError

ROWS = [
    (4, 2, 1, 1, 1),
    (24, 128, 8, 64, 2),
    (50, 32, 64, 64, 1),
    (200, 16, 32, 128, 1),
    (100, 64, 256, 256, 1),
]


def parse_row(text: str) -> tuple[int, int, int, int, int]:
    """'T,B,I,H,layers' -> a tuple of five positive ints."""
    try:
        row = tuple(int(v) for v in text.split(","))
    except ValueError:
        row = ()
    if len(row) != 5 or min(row) < 1:
        raise argparse.ArgumentTypeError(
            f"expected T,B,I,H,layers (five positive ints), got {text!r}"
        )
    return row


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "bench", help="speed against torch.nn.LSTM", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--repeats", type=int, default=15, help="timed samples per implementation")
    parser.add_argument(
        "--rows", type=parse_row, nargs="+", default=ROWS, metavar="T,B,I,H,L", help="rows to time"
    )
    parser.add_argument("--sample-ms", type=float, default=20.0, help="target length of one sample")
    parser.add_argument(
        "--no-fit", dest="fit", action="store_false", help="skip the tiny-model training table"
    )
    parser.add_argument(
        "--no-cell", dest="cell", action="store_false", help="skip the step-by-step LSTMCell table"
    )
    parser.add_argument(
        "--cell-steps", type=int, default=50, help="time steps of the LSTMCell table's sequence"
    )
    parser.add_argument("--fit-epochs", type=int, default=2000, help="epochs for the fit table")
    parser.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace) -> int:
    import torch

    from lstmbyhand.cli.timing import bench_cell, bench_fit, bench_row, machine
    from lstmbyhand.nn import native

    if args.repeats < 1:
        raise UserError(f"--repeats: expected a positive int, got {args.repeats}")
    if args.cell_steps < 1:
        raise UserError(f"--cell-steps: expected a positive int, got {args.cell_steps}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    path = "compiled (lstmbyhand.nn._C)" if native.available() else "PyTorch ops (not compiled)"
    print(
        f"Machine: {machine(device)}; our kernels: {path if device.type == 'cpu' else 'PyTorch ops'}"
    )
    print(
        f"Median of {args.repeats} alternating samples; ratio = ours / torch.nn.LSTM (< 1: faster)\n"
    )
    print(
        "| T | B | I | H | layers | train ours (ms) | train nn.LSTM (ms) | train ratio "
        "| infer ours (ms) | infer nn.LSTM (ms) | infer ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in args.rows:
        r = bench_row(row, device, args.repeats, args.sample_ms)
        cells = [str(v) for v in row]
        cells += [f"{r['train_ours'] * 1e3:.3f}", f"{r['train_torch'] * 1e3:.3f}"]
        cells += [f"**{r['train_ours'] / r['train_torch']:.2f}**"]
        cells += [f"{r['infer_ours'] * 1e3:.3f}", f"{r['infer_torch'] * 1e3:.3f}"]
        cells += [f"**{r['infer_ours'] / r['infer_torch']:.2f}**"]
        print("| " + " | ".join(cells) + " |", flush=True)
    if args.cell:
        r = bench_cell(args.cell_steps, device, args.repeats, args.sample_ms)
        print(
            f"\nLSTMCell called step by step from Python ({args.cell_steps} steps of "
            "examples/time_sequence_prediction's model: LSTMCell(1, 51) -> LSTMCell(51, 51) -> "
            "Linear, batch 97, float64); ratio = ours / torch.nn.LSTMCell:\n"
        )
        print(
            "| train ours (ms) | train nn.LSTMCell (ms) | train ratio "
            "| infer ours (ms) | infer nn.LSTMCell (ms) | infer ratio |"
        )
        print("|---|---|---|---|---|---|")
        cells = [f"{r['train_ours'] * 1e3:.3f}", f"{r['train_torch'] * 1e3:.3f}"]
        cells += [f"**{r['train_ours'] / r['train_torch']:.2f}**"]
        cells += [f"{r['infer_ours'] * 1e3:.3f}", f"{r['infer_torch'] * 1e3:.3f}"]
        cells += [f"**{r['infer_ours'] / r['infer_torch']:.2f}**"]
        print("| " + " | ".join(cells) + " |", flush=True)
    if args.fit and device.type == "cpu":
        fit = bench_fit(args.fit_epochs, max(3, args.repeats // 3))
        trainer = "fit_adam (compiled loop)" if native.available() else "Python loop"
        print("\nSeed model LSTMbyHand(4, 1), 2 batches of 1 sequence, Adam steps per second:\n")
        print("| ours: train_model | nn.LSTM + torch.optim.Adam | speed-up |")
        print("|---|---|---|")
        print(
            f"| {fit['ours']:,.0f} ({trainer}) | {fit['torch']:,.0f} | **{fit['ours'] / fit['torch']:.0f}x** |"
        )
    return 0
