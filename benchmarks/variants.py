"""The cell variants' training step (forward + backward) against the plain LSTM's and against autograd
through the readable cell, on the CPU: docs/performance.md's variants table.

    python benchmarks/variants.py [--repeats 7] [--sample-ms 200] [--threads 1]
        [--shapes 50,32,64,64 100,64,256,256] [--only peephole zoneout]

Each row times one variant's step against the plain LSTM (same sizes, same input) and against the same
variant with backend="reference" (the readable loop, autograd), alternating sample by sample
(`lstmbyhand.cli.timing.compare`), and reports the ratios of the medians. Targets (issue 14): at most
1.3x the plain step, at least 3x faster than autograd. Regularized rows run in training mode (new
masks at every call, drawn inside the timed step as a training loop draws them).
"""

from __future__ import annotations

import argparse

import torch

from lstmbyhand.cli.timing import compare
from lstmbyhand.nn.layers import LSTM

VARIANTS: dict[
    str, dict
] = {  # "plain": the control (ours against ours, and the plain readable loop)
    "plain": {},
    "peephole": {"peephole": True},
    "coupled": {"coupled": True},
    "layer_norm": {"layer_norm": True},
    "forget_bias": {"forget_bias": 1.0},
    "recurrent_dropout": {"recurrent_dropout": 0.25},
    "zoneout": {"zoneout": (0.1, 0.15)},
    "no input gate": {"ablate": ("input_gate",)},
    "no forget gate": {"ablate": ("forget_gate",)},
    "no output gate": {"ablate": ("output_gate",)},
    "no input activation": {"ablate": ("input_activation",)},
    "no output activation": {"ablate": ("output_activation",)},
    "peephole+coupled+layer_norm": {"peephole": True, "coupled": True, "layer_norm": True},
}


def train_step(model: LSTM, x: torch.Tensor):
    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(x)[0].sum().backward()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sample-ms", type=float, default=200.0)
    parser.add_argument("--shapes", nargs="+", default=["50,32,64,64", "100,64,256,256"])
    parser.add_argument("--only", nargs="*", default=None, help="variant names to run")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| T, B, I, H | variant | step (ms) | / plain | autograd / ours |")
    print("|---|---|---|---|---|")
    for shape in args.shapes:
        T, B, I, H = (int(s) for s in shape.split(","))
        torch.manual_seed(0)
        x = torch.randn(T, B, I)
        plain = LSTM(I, H)
        for name, kwargs in VARIANTS.items():
            if args.only and name not in args.only:
                continue
            torch.manual_seed(0)
            ours = LSTM(I, H, **kwargs)
            reference = LSTM(I, H, **kwargs)
            reference.load_state_dict(ours.state_dict())
            reference.backend = "reference"
            t_ours, t_plain = compare(
                train_step(ours, x), train_step(plain, x), device, args.repeats, args.sample_ms
            )
            t_ours2, t_ref = compare(
                train_step(ours, x), train_step(reference, x), device, args.repeats, args.sample_ms
            )
            print(
                f"| {T}, {B}, {I}, {H} | {name} | {t_ours * 1e3:.2f} | {t_ours / t_plain:.2f} | "
                f"{t_ref / t_ours2:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
