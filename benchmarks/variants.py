"""The cell variants' training step (forward + backward) against the plain LSTM's and against autograd
through the readable cell, on the CPU: docs/performance.md's variants table.

    python benchmarks/variants.py [--repeats 7] [--sample-ms 200] [--threads 1] [--clock cpu]
        [--shapes 50,32,64,64 100,64,256,256] [--only peephole zoneout] [--floor]

Each row times one variant's step against the plain LSTM (same sizes, same input) and against the same
variant with backend="reference" (the readable loop, autograd), alternating sample by sample
(`lstmbyhand.cli.timing.compare`), and reports the ratios of the medians. Targets (issue 14): at most
1.3x the plain step, at least 3x faster than autograd. Regularized rows run in training mode (new
masks at every call, drawn inside the timed step as a training loop draws them). `--clock cpu` times
with this thread's CPU time (time.thread_time) instead of the wall clock: with one torch thread the
step runs on this thread alone, and the time other processes hold the cores is left out, which on a
shared machine keeps the ratios far steadier. `--floor` prints instead each shape's GEMM work per
training step (FLOPs), a bare torch.mm loop of the same products and our plain step (CPU time).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

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


def compare_cpu(
    ours: Callable[[], None], theirs: Callable[[], None], repeats: int, sample_ms: float
) -> tuple[float, float]:
    """Median CPU seconds of this thread per call of ours and theirs, timed alternately (the order
    flips every repeat), each sample as many calls as fill sample_ms."""
    loops = 1
    for fn in (ours, theirs):
        start = time.thread_time()
        fn()
        loops = max(loops, int(sample_ms / 1e3 / max(time.thread_time() - start, 1e-6)))
    times: dict[int, list[float]] = {0: [], 1: []}
    fns = (ours, theirs)
    for r in range(repeats):
        for k in (0, 1) if r % 2 == 0 else (1, 0):
            start = time.thread_time()
            for _ in range(loops):
                fns[k]()
            times[k].append((time.thread_time() - start) / loops)
    return statistics.median(times[0]), statistics.median(times[1])


def step_flops(T: int, B: int, I: int, H: int) -> dict[str, int]:
    """The GEMM FLOPs of one training step of a one-layer LSTM (G = 4H, x without gradient): forward
    W x and U h, backward dU, dW and dh = dz U (dx = dz W skipped)."""
    G, TB = 4 * H, T * B
    return {"W x": 2 * TB * G * I, "U h": 2 * TB * G * H, "dU": 2 * G * H * TB,
            "dW": 2 * G * I * TB, "dz U": 2 * TB * G * H}  # fmt: skip


def gemm_floor(T: int, B: int, I: int, H: int, repeats: int) -> tuple[float, float]:
    """CPU seconds of a bare loop of the step's products with torch.mm, the same sizes: (1) as the
    kernels run them, W x and the weight gradients once over all T B rows, U h and dz U once per step
    (B rows each), (2) all five as single products over the T B rows. Medians of `repeats`."""
    G, TB = 4 * H, T * B
    x, h = torch.randn(TB, I), torch.randn(TB, H)
    w, u, dz = torch.randn(I, G), torch.randn(H, G), torch.randn(TB, G)
    u_t, out_g, out_h = u.t().contiguous(), torch.empty(B, G), torch.empty(B, H)

    def stepwise() -> None:
        torch.mm(x, w)  # W x, all steps
        for t in range(T):
            torch.mm(h[t * B : (t + 1) * B], u, out=out_g)  # U h_t
        for t in range(T):
            torch.mm(dz[t * B : (t + 1) * B], u_t, out=out_h)  # dz_t U
        torch.mm(dz.t(), h)  # dU
        torch.mm(dz.t(), x)  # dW

    def whole() -> None:
        torch.mm(x, w), torch.mm(h, u), torch.mm(dz, u_t), torch.mm(dz.t(), h), torch.mm(dz.t(), x)

    times = []
    for fn in (stepwise, whole):
        fn()
        samples = []
        for _ in range(repeats):
            start = time.thread_time()
            fn()
            samples.append(time.thread_time() - start)
        times.append(statistics.median(samples))
    return times[0], times[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sample-ms", type=float, default=200.0)
    parser.add_argument("--shapes", nargs="+", default=["50,32,64,64", "100,64,256,256"])
    parser.add_argument("--only", nargs="*", default=None, help="variant names to run")
    parser.add_argument(
        "--floor", action="store_true",
        help="instead: each shape's GEMM FLOPs per step, a bare torch.mm loop of them, our plain step",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall",
        help="wall clock, or this thread's CPU time (needs --threads 1)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.clock == "cpu" and args.threads != 1:
        parser.error("--clock cpu needs --threads 1 (the step must run on this thread alone)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.floor:
        print("| T, B, I, H | GFLOP / step | torch.mm, stepwise (ms) | torch.mm, whole (ms) | "
              "plain step (ms) | GFLOP/s: stepwise, whole, plain |")  # fmt: skip
        print("|---|---|---|---|---|---|")
        for shape in args.shapes:
            T, B, I, H = (int(s) for s in shape.split(","))
            flops = sum(step_flops(T, B, I, H).values())
            stepwise, whole = gemm_floor(T, B, I, H, args.repeats)
            torch.manual_seed(0)
            x, plain = torch.randn(T, B, I), LSTM(I, H)
            step = train_step(plain, x)
            step()
            samples = []
            for _ in range(args.repeats):
                start = time.thread_time()
                step()
                samples.append(time.thread_time() - start)
            t_plain = statistics.median(samples)
            rates = ", ".join(f"{flops / t / 1e9:.0f}" for t in (stepwise, whole, t_plain))
            print(f"| {T}, {B}, {I}, {H} | {flops / 1e9:.2f} | {stepwise * 1e3:.1f} | "
                  f"{whole * 1e3:.1f} | {t_plain * 1e3:.1f} | {rates} |", flush=True)  # fmt: skip
        return
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

            def timed(a, b):
                if args.clock == "cpu":
                    return compare_cpu(a, b, args.repeats, args.sample_ms)
                return compare(a, b, device, args.repeats, args.sample_ms)

            t_ours, t_plain = timed(train_step(ours, x), train_step(plain, x))
            t_ours2, t_ref = timed(train_step(ours, x), train_step(reference, x))
            print(
                f"| {T}, {B}, {I}, {H} | {name} | {t_ours * 1e3:.2f} | {t_ours / t_plain:.2f} | "
                f"{t_ref / t_ours2:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
