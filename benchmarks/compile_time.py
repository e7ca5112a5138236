"""torch.compile with our LSTM against nn.LSTM: cold compile time, and compiled against eager steps.

    python benchmarks/compile_time.py [--runs 5] [--steps 200] [--threads 1] [--shape T,B,I,H]
    python benchmarks/compile_time.py --profile ours     (one cold worker under cProfile)

The model is LSTM(8, 32, num_layers=2) + Linear(32, 1) on a (24, 16, 8) input, ours or nn.LSTM's
(same weights). Each run is a fresh process with its own empty inductor cache (TORCHINDUCTOR_CACHE_DIR
in a new temporary folder), and runs alternate ours / nn.LSTM. In a run: torch's compiler modules are
imported first (their import is not compile time), then the first compiled training step
(forward + backward of the loss: both graphs compiled) and the first compiled inference call (under
no_grad: a second compile) are timed; then compiled and eager steps alternate `--steps` times, on
`--threads` threads (default 1: steadier on a shared machine). The table gives medians over the runs
and ratios of medians. Columns: ours; nn.LSTM as torch.compile takes it by default (Dynamo does not
trace RNN modules and runs the whole frame eagerly); nn.LSTM with `torch._dynamo.config.allow_rnn`;
the Linear head alone, the floor any compiled model with one generated kernel pays; ours
without the head (the LSTM's output is the model's: no generated kernel at all); and a Linear
without bias, the floor of a model without a generated kernel (its graphs are matmuls only).
`--shape` sets the model's sizes (default 24,16,8,32), for compiled-vs-eager steps at a larger one.

Beside each first call's wall time: the worker's CPU time (user + sys, `resource.getrusage`) in
its own process and in the child processes it waited for (g++: RUSAGE_CHILDREN; inductor's
compile-worker pool, alive until the process ends, is not counted), and where the wall time went,
from torch's own timers (`torch._dynamo.utils.compilation_time_metrics`) and one timer around
inductor's CPU vector-ISA probe (`VecISA.check_build`): Dynamo (bytecode tracing, guards), AOT
autograd (graph capture, joint passes, partition), inductor (lowering, codegen, loading), the
ISA probe (g++ on test programs, once per cache folder), g++ on the generated kernels, and the
rest (running the graph, Python outside compile). After each cold process a second one runs on
the cache it left (what a user's next process pays: inductor's default cache folder persists),
its first calls timed alike (warm_*). `--profile IMPL` instead runs one cold worker
under cProfile and prints its top functions.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

IMPLS = ("ours", "nn.LSTM", "nn.LSTM+allow_rnn", "Linear alone", "ours, no head", "Linear, no bias")
LAYERS = 2
PHASES = ("dynamo", "aot", "inductor", "isa_probe", "gxx", "rest")
# inductor's one-time keys (hashes of torch's and triton's files), timed apart from compile_fx_inner
SETUP = ("inductor_codecache_torch_key", "CacheBase.get_system.triton_key")
WHERE = ("inductor", "backend", "thread")  # where a probe or g++ run happened (see _Phases)
PHASE_NAMES = {
    "dynamo": "Dynamo: bytecode tracing, guards",
    "aot": "AOT autograd: capture, joint passes, partition",
    "inductor": "inductor: cache keys, lowering, codegen, loading",
    "isa_probe": "inductor's CPU ISA probe (g++ on test programs)",
    "gxx": "g++ on the generated kernels",
    "rest": "rest: running the graphs, Python outside compile",
}


def build(impl: str, shape: tuple[int, int, int, int] = (24, 16, 8, 32)):
    import torch
    from torch import nn

    from lstmbyhand.nn import LSTM

    T, B, I, H = shape

    class Model(nn.Module):
        def __init__(self, cls) -> None:
            super().__init__()
            self.lstm = cls(I, H, num_layers=LAYERS)
            self.head = nn.Linear(H, 1)

        def forward(self, x):  # x (T, B, I) -> (T, B, 1)
            return self.head(self.lstm(x)[0])

    class Alone(nn.Module):
        def __init__(self, lstm) -> None:
            super().__init__()
            self.lstm = lstm

        def forward(self, x):  # x (T, B, I) -> (T, B, H)
            return self.lstm(x)[0]

    torch.manual_seed(0)
    model = Model(LSTM)
    if impl == "Linear alone":  # the floor: the head's kernels, no LSTM
        return nn.Linear(I, 1), torch.randn(T, B, I)
    if impl == "Linear, no bias":  # the floor without a generated kernel: two matmuls, no sum
        return nn.Linear(I, 1, bias=False), torch.randn(T, B, I)
    if impl == "ours, no head":
        return Alone(model.lstm), torch.randn(T, B, I)
    if impl != "ours":
        reference = Model(nn.LSTM)
        reference.load_state_dict(model.state_dict())
        model = reference
    return model, torch.randn(T, B, I)


def _cpu() -> tuple[float, float]:
    """CPU seconds (user + sys) of this process and of its waited-for children."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


class _Phases:
    """Where one first call's wall time went: torch's compile timers (each a list of seconds, one
    per timed call) and two timers of our own, around inductor's vector-ISA probe
    (`VecISA.check_build`) and around each g++ run outside it (`cpp_builder.run_compile_cmd`),
    each taken out of the compile stage it ran in (torch's event stack): inductor's
    compile_fx_inner, or elsewhere in the backend (a cache load in AOT autograd); g++ on a
    background thread is inductor's asynchronous compile, which compile_fx_inner waits for."""

    def __init__(self) -> None:
        from torch._dynamo.utils import compilation_time_metrics, get_chromium_event_logger
        from torch._inductor import cpp_builder, cpu_vec_isa

        self.metrics = compilation_time_metrics
        self.spent = {f"{what}_{where}": 0.0 for what in ("probe", "gxx") for where in WHERE}
        stack = get_chromium_event_logger().get_stack
        probing = [False]

        def where() -> str:
            events = stack()
            return "inductor" if "inductor_compile" in events else "backend" if events else "thread"

        def timer(what: str, run):
            def timed(*args, **kwargs):
                if probing[0]:  # (g++ inside the probe is the probe's)
                    return run(*args, **kwargs)
                key, start = f"{what}_{where()}", time.perf_counter()
                probing[0] = what == "probe"
                try:
                    return run(*args, **kwargs)
                finally:
                    probing[0] = False
                    self.spent[key] += time.perf_counter() - start

            return timed

        cpu_vec_isa.VecISA.check_build = timer("probe", cpu_vec_isa.VecISA.check_build)  # type: ignore[method-assign]
        cpp_builder.run_compile_cmd = timer("gxx", cpp_builder.run_compile_cmd)

    def snapshot(self) -> dict[str, float]:
        keys = ("_compile.compile_inner", "OutputGraph.call_user_compiler")
        keys += ("compile_fx.<locals>.bw_compiler", "compile_fx_inner", *SETUP)
        return {k: sum(self.metrics.get(k, ())) for k in keys} | self.spent

    @staticmethod
    def split(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, float]:
        d = {k: after[k] - before[k] for k in after}
        user = d["OutputGraph.call_user_compiler"]
        backend = user + d["compile_fx.<locals>.bw_compiler"]  # the backward compiles lazily
        setup = sum(d[k] for k in SETUP)  # inductor's, before AOT autograd runs
        inside = {w: d[f"probe_{w}"] + d[f"gxx_{w}"] for w in WHERE}
        phases = {
            "dynamo": d["_compile.compile_inner"] - user,
            "aot": backend - d["compile_fx_inner"] - setup - inside["backend"],
            "inductor": d["compile_fx_inner"] + setup - inside["inductor"] - inside["thread"],
            "isa_probe": sum(d[f"probe_{w}"] for w in WHERE),
            "gxx": sum(d[f"gxx_{w}"] for w in WHERE),
        }
        return phases | {"rest": wall - sum(phases.values())}


def worker(
    impl: str, steps: int, threads: int, shape: tuple[int, int, int, int]
) -> dict[str, float]:
    """One cold process: first compiled train step and inference call, then steady-state medians."""
    import torch

    torch.set_num_threads(threads)
    import torch._dynamo
    import torch._inductor.compile_fx  # noqa: F401  (imports are not compile time)

    torch._dynamo.config.allow_rnn = impl == "nn.LSTM+allow_rnn"
    model, x = build(impl, shape)
    compiled = torch.compile(model)
    phases = _Phases()

    def train(m) -> None:
        m.zero_grad(set_to_none=True)
        m(x).square().mean().backward()

    def infer(m) -> None:
        with torch.no_grad():
            m(x)

    result: dict[str, float] = {}
    for mode, step in (("train", train), ("infer", infer)):
        timers, (me, kids) = phases.snapshot(), _cpu()
        start = time.perf_counter()
        step(compiled)
        wall = time.perf_counter() - start
        me_after, kids_after = _cpu()
        result[f"compile_{mode}"] = wall
        result[f"cpu_self_{mode}"] = me_after - me
        result[f"cpu_children_{mode}"] = kids_after - kids
        for phase, seconds in _Phases.split(timers, phases.snapshot(), wall).items():
            result[f"{phase}_{mode}"] = seconds
    for mode, step in (("train", train), ("infer", infer)) if steps else ():
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


def run_cold(impl: str, argv: list[str]) -> dict[str, float] | str:
    """One fresh process with an empty inductor cache, then a second one on the cache the first
    left (its first calls' numbers as warm_*, no steps): their numbers, or the error one ended with."""
    result: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="compile-time-") as cache:
        env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache, TRITON_CACHE_DIR=cache)
        for prefix, args in (("", argv), ("warm_", [*argv, "--steps", "0"])):
            done = subprocess.run(
                [sys.executable, __file__, "--worker", impl, *args],
                env=env,
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                return done.stderr.strip().splitlines()[-1]
            numbers = json.loads(done.stdout.strip().splitlines()[-1])
            result |= {prefix + k: v for k, v in numbers.items()}
    return result


def profile(impl: str, shape: tuple[int, int, int, int]) -> None:
    """One cold worker's first training step under cProfile (its own empty cache): top functions."""
    import cProfile
    import pstats

    with tempfile.TemporaryDirectory(prefix="compile-time-") as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.environ["TRITON_CACHE_DIR"] = cache
        import torch
        import torch._dynamo
        import torch._inductor.compile_fx  # noqa: F401

        torch.set_num_threads(1)
        model, x = build(impl, shape)
        compiled = torch.compile(model)
        profiler = cProfile.Profile()
        profiler.enable()
        compiled(x).square().mean().backward()
        profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)


def medians(results: list[dict[str, float] | str]) -> dict[str, float] | str:
    """Median of each number over the runs, or the first error when a run failed."""
    failed = [r for r in results if isinstance(r, str)]
    if failed:
        return failed[0]
    keys = results[0].keys()  # type: ignore[union-attr]
    return {k: statistics.median(r[k] for r in results) for k in keys}  # type: ignore[index]


def table(med: dict[str, dict[str, float] | str]) -> None:
    print("| | " + " | ".join(med) + " |")
    print("|---|" + "---|" * len(med))
    rows = []
    for m in ("train", "infer"):
        rows += [(f"cold compile, first {m} call, wall (s)", f"compile_{m}", 1.0)]
        rows += [("  CPU, this process (s)", f"cpu_self_{m}", 1.0)]
        rows += [("  CPU, child processes (s)", f"cpu_children_{m}", 1.0)]
        rows += [(f"  {PHASE_NAMES[p]} (s)", f"{p}_{m}", 1.0) for p in PHASES]
    for m in ("train", "infer"):
        rows += [
            (f"warm cache (a second process), first {m} call, wall (s)", f"warm_compile_{m}", 1)
        ]
        rows += [("  CPU, this process (s)", f"warm_cpu_self_{m}", 1.0)]
        rows += [(f"  {PHASE_NAMES[p]} (s)", f"warm_{p}_{m}", 1.0) for p in PHASES]
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
    keys = ("compile", "cpu_self", "cpu_children", *PHASES)
    pairs = (("ours", "nn.LSTM"), ("ours", "Linear alone"), ("ours, no head", "Linear, no bias"))
    for model, floor in pairs:
        a, b = med.get(model, "absent"), med.get(floor, "absent")
        if isinstance(a, str) or isinstance(b, str):
            continue
        print(f"\n\n{model} - {floor}, first train / infer call (s, medians):", end="")
        for key in (*keys, *(f"warm_{k}" for k in keys)):
            added = [a[f"{key}_{m}"] - b[f"{key}_{m}"] for m in ("train", "infer")]
            print(f"\n  {key}: {added[0]:+.3f} / {added[1]:+.3f}", end="")
    print()
    for impl, r in med.items():
        if isinstance(r, str):
            print(f"\n{impl} fails: {r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shape", default="24,16,8,32", help="T,B,I,H")
    parser.add_argument("--impls", nargs="+", choices=IMPLS, default=IMPLS, help="columns")
    parser.add_argument("--profile", choices=IMPLS)
    parser.add_argument("--worker", choices=IMPLS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    load_before = os.getloadavg()
    T, B, I, H = shape = tuple(int(n) for n in args.shape.split(","))
    if args.profile:
        profile(args.profile, shape)  # type: ignore[arg-type]
        return
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.threads, shape)))  # type: ignore[arg-type]
        return
    argv = ["--steps", str(args.steps), "--threads", str(args.threads), "--shape", args.shape]
    runs: dict[str, list[dict[str, float] | str]] = {impl: [] for impl in args.impls}
    for k in range(args.runs):
        for impl in args.impls:
            runs[impl].append(run_cold(impl, argv))
            print(f"run {k + 1} {impl}: {runs[impl][-1]}", file=sys.stderr, flush=True)
    print(
        f"model: LSTM({I}, {H}, num_layers={LAYERS}) + Linear({H}, 1), input ({T}, {B}, {I}); ",
        end="",
    )
    print(f"{args.runs} cold runs each, alternating, {args.threads} thread(s); medians")
    print(f"load average before / after: {load_before} / {os.getloadavg()}\n")
    table({impl: medians(rs) for impl, rs in runs.items()})


if __name__ == "__main__":
    main()
