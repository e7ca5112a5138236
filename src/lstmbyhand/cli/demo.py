"""`lstmbyhand demo`: the seed's example, both ways of reading it, with every gate plotted.

Trains `LSTMbyHand(4, 1)` (one step of four features) and `LSTMbyHand(1, 1)` (four one-feature days)
on Company A [0, 0.5, 0.25, 1] -> 0 and Company B [1, 0.5, 0.25, 1] -> 1, prints what each predicts,
and writes to the output folder:

    loss.png    the training loss of both models
    gates.png   for the four-day model, Company A and B: the four gates, the cell and the hidden state

One step from the zero state cannot reach 1: c = i·g < 1, so h = o·tanh(c) < tanh(1) ≈ 0.76.
Four steps can, because the cell state adds up.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the parser must not import torch: `lstmbyhand --help` stays fast
    from lstmbyhand.seed import LSTMbyHand

FORMULATIONS = {"one step of 4 features": 4, "four days of 1 feature": 1}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="train the seed's example both ways and plot every gate"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("lstmbyhand-demo"), help="folder for the plots"
    )
    parser.add_argument(
        "--epochs", type=int, default=50000, help="at most this many epochs (default 50000)"
    )
    parser.add_argument(
        "--lr", type=float, default=0.001, help="Adam's learning rate (default 0.001)"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.set_defaults(func=main)


def train_both(epochs: int, lr: float, seed: int) -> dict[str, tuple[LSTMbyHand, list[float]]]:
    """Each formulation trained from the same seed: name -> (model, loss per epoch)."""
    import torch

    from lstmbyhand.seed import LSTMbyHand, dataLoader

    trained = {}
    for name, input_size in FORMULATIONS.items():
        torch.manual_seed(seed)
        model = LSTMbyHand(input_size, 1)
        trained[name] = (
            model,
            model.train_model(dataLoader(), max_epoch=epochs, lr=lr, progress=False),
        )
    return trained


def prediction_table(trained: dict[str, tuple[LSTMbyHand, list[float]]]) -> str:
    import torch

    from lstmbyhand.seed import COMPANY_A, COMPANY_B

    names = list(trained)
    rows = [["company", "observed", *names], ["-" * 7, "-" * 8, *("-" * len(n) for n in names)]]
    for company, days, observed in (("A", COMPANY_A, 0.0), ("B", COMPANY_B, 1.0)):
        predicted = [trained[n][0].predict(torch.tensor(days))[0].item() for n in names]
        rows.append([company, f"{observed:.3f}", *(f"{p:.3f}" for p in predicted)])
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows
    )


def plot_losses(trained, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, (_, losses) in trained.items():
        ax.plot(range(1, len(losses) + 1), losses, label=name)
    ax.set(xlabel="epoch", ylabel="mean squared error", yscale="log", title="Training loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_gates(model: LSTMbyHand, path: Path) -> None:
    """Two columns (Company A, B); rows: the four gates, then the cell and hidden state, over the days."""
    import matplotlib.pyplot as plt
    import torch

    from lstmbyhand.seed import COMPANY_A, COMPANY_B

    fig, axes = plt.subplots(2, 2, figsize=(9, 6), sharex=True)
    for col, (company, days) in enumerate((("Company A", COMPANY_A), ("Company B", COMPANY_B))):
        x = model.as_batch(torch.tensor(days))  # (1, T, I)
        trace = model.lstm.trace(x)[0][0]  # fields (T, 1, 1)
        steps = range(1, x.shape[1] + 1)
        gates, states = axes[0, col], axes[1, col]
        for label, values in (
            ("input gate i", trace.input_gate),
            ("forget gate f", trace.forget_gate),
            ("candidate g", trace.candidate),
            ("output gate o", trace.output_gate),
        ):
            gates.plot(steps, values[:, 0, 0], marker="o", label=label)
        states.plot(steps, trace.cell[:, 0, 0], marker="s", label="cell state c")
        states.plot(steps, trace.hidden[:, 0, 0], marker="s", label="hidden state h")
        states.plot(steps, days, linestyle=":", color="grey", label="input x")
        gates.set(title=f"{company}: gates", ylim=(-1.05, 1.05))
        states.set(title=f"{company}: states", xlabel="day", xticks=list(steps))
    axes[0, 1].legend(loc="lower right", fontsize=8)
    axes[1, 1].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(args: argparse.Namespace) -> int:
    import matplotlib

    from lstmbyhand.errors import UserError

    if not (math.isfinite(args.lr) and args.lr > 0):
        raise UserError(f"--lr must be a positive number, got {args.lr}; try --lr 0.001")
    if args.epochs < 1:
        raise UserError(f"--epochs must be a whole number ≥ 1, got {args.epochs}")
    if not 0 <= args.seed < 2**63:
        raise UserError(f"--seed must be a whole number in [0, 2**63), got {args.seed}")
    matplotlib.use("Agg")  # the CLI draws to files only
    trained = train_both(args.epochs, args.lr, args.seed)
    print(prediction_table(trained))
    print(
        f"\nOne step from the zero state reaches at most tanh(1) = {math.tanh(1):.3f}: "
        "c = i*g < 1 and h = o*tanh(c). Four days let the cell state add up, so B can reach 1."
    )
    args.out.mkdir(parents=True, exist_ok=True)
    plot_losses(trained, args.out / "loss.png")
    plot_gates(trained["four days of 1 feature"][0], args.out / "gates.png")
    print(f"plots: {args.out / 'loss.png'}, {args.out / 'gates.png'}")
    return 0
