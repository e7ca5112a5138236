"""torch.compile with our LSTM against nn.LSTM: cold compile time, and compiled against eager steps.

    python benchmarks/compile_time.py [--runs 5] [--steps 200] [--threads 1]

The model is LSTM(8, 32, num_layers=2) + Linear(32, 1) on a (24, 16, 8) input, ours or nn.LSTM's
(same weights). Each run is a fresh process with its own empty inductor cache (TORCHINDUCTOR_CACHE_DIR
in a new temporary folder), and runs alternate ours / nn.LSTM. In a run: torch's compiler modules are
imported first (their import is not compile time), then the first compiled training step
(forward + backward of the loss: both graphs compiled) and the first compiled inference call (under
no_grad: a second compile) are timed; then compiled and eager steps alternate `--steps` times, on
`--threads` threads (default 1: steadier on a shared machine). The table gives medians over the runs
and ratios of medians. Columns: ours; nn.LSTM as torch.compile takes it by default (Dynamo does not
trace RNN modules and runs the whole frame eagerly); nn.LSTM with `torch._dynamo.config.allow_rnn`;
and the Linear head alone, the floor any compiled model with one generated kernel pays.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

IMPLS = ("ours", "nn.LSTM", "nn.LSTM+allow_rnn", "Linear alone")
T, B, I, H, LAYERS = 24, 16, 8, 32, 2


def build(impl: str):
    import torch
    from torch import nn

    from lstmbyhand.nn import LSTM

    class Model(nn.Module):
        def __init__(self, cls) -> None:
            super().__init__()
            self.lstm = cls(I, H, num_layers=LAYERS)
            self.head = nn.Linear(H, 1)

        def forward(self, x):  # x (T, B, I) -> (T, B, 1)
            return self.head(self.lstm(x)[0])

    torch.manual_seed(0)
    model = Model(LSTM)
    if impl == "Linear alone":  # the floor: the head's kernels, no LSTM
        return nn.Linear(I, 1), torch.randn(T, B, I)
    if impl != "ours":
        reference = Model(nn.LSTM)
        reference.load_state_dict(model.state_dict())
        model = reference
    return model, torch.randn(T, B, I)


def worker(impl: str, steps: int, threads: int) -> dict[str, float]:
    """One cold process: first compiled train step and inference call, then steady-state medians."""
    import torch

    torch.set_num_threads(threads)
    import torch._dynamo
    import torch._inductor.compile_fx  # noqa: F401  (imports are not compile time)

    torch._dynamo.config.allow_rnn = impl == "nn.LSTM+allow_rnn"
    model, x = build(impl)
    compiled = torch.compile(model)

    def train(m) -> None:
        m.zero_grad(set_to_none=True)
        m(x).square().mean().backward()

    def infer(m) -> None:
        with torch.no_grad():
            m(x)

    result: dict[str, float] = {}
    for mode, step in (("train", train), ("infer", infer)):
        start = time.perf_counter()
        step(compiled)
        result[f"compile_{mode}"] = time.perf_counter() - start
    for mode, step in (("train", train), ("infer", infer)):
        step(model)  # eager warm-up
        times: dict[str, list[float]] = {"compiled": [], "eager": []}
        for _ in range(steps):
            for kind, m in (("compiled", compiled), ("eager", model)):
                start = time.perf_counter()
                step(m)
                times[kind].append(time.perf_counter() - start)
        for kind, samples in times.items():
            result[f"{kind}_{mode}"] = statistics.median(samples)
    return result


def run_cold(impl: str, steps: int, threads: int) -> dict[str, float] | str:
    """One fresh process with an empty inductor cache: its numbers, or the error it ended with."""
    with tempfile.TemporaryDirectory(prefix="compile-time-") as cache:
        env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache, TRITON_CACHE_DIR=cache)
        argv = [sys.executable, __file__, "--worker", impl, "--steps", str(steps)]
        done = subprocess.run(
            [*argv, "--threads", str(threads)], env=env, capture_output=True, text=True
        )
    if done.returncode != 0:
        return done.stderr.strip().splitlines()[-1]
    return json.loads(done.stdout.strip().splitlines()[-1])


def medians(results: list[dict[str, float] | str]) -> dict[str, float] | str:
    """Median of each number over the runs, or the first error when a run failed."""
    failed = [r for r in results if isinstance(r, str)]
    if failed:
        return failed[0]
    keys = results[0].keys()  # type: ignore[union-attr]
    return {k: statistics.median(r[k] for r in results) for k in keys}  # type: ignore[index]


def table(med: dict[str, dict[str, float] | str]) -> None:
    print("| | " + " | ".join(IMPLS) + " |")
    print("|---|" + "---|" * len(IMPLS))
    rows = [(f"cold compile, first {m} call (s)", f"compile_{m}", 1.0) for m in ("train", "infer")]
    rows += [
        (f"{kind} {m} step (ms)", f"{kind}_{m}", 1e3)
        for m in ("train", "infer")
        for kind in ("compiled", "eager")
    ]
    for name, key, scale in rows:
        cells = ["fails" if isinstance(r, str) else f"{r[key] * scale:.3f}" for r in med.values()]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for m in ("train", "infer"):
        cells = [
            "" if isinstance(r, str) else f"{r[f'compiled_{m}'] / r[f'eager_{m}']:.2f}"
            for r in med.values()
        ]
        print(f"| compiled / eager, {m} | " + " | ".join(cells) + " |")
    ours, theirs = med["ours"], med["nn.LSTM"]
    assert not isinstance(ours, str) and not isinstance(theirs, str)
    for m in ("train", "infer"):
        ratio = ours[f"compile_{m}"] / theirs[f"compile_{m}"]
        print(f"\ncold compile, first {m} call, ours / nn.LSTM: {ratio:.2f}", end="")
    print()
    for impl, r in med.items():
        if isinstance(r, str):
            print(f"\n{impl} fails: {r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", choices=IMPLS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.threads)))
        return
    runs: dict[str, list[dict[str, float] | str]] = {impl: [] for impl in IMPLS}
    for k in range(args.runs):
        for impl in IMPLS:
            runs[impl].append(run_cold(impl, args.steps, args.threads))
            print(f"run {k + 1} {impl}: {runs[impl][-1]}", file=sys.stderr, flush=True)
    print(
        f"model: LSTM({I}, {H}, num_layers={LAYERS}) + Linear({H}, 1), input ({T}, {B}, {I}); ",
        end="",
    )
    print(f"{args.runs} cold runs each, alternating, {args.threads} thread(s); medians\n")
    table({impl: medians(rs) for impl, rs in runs.items()})


if __name__ == "__main__":
    main()
