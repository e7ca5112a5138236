"""`lstmbyhand bench`: our LSTM against torch.nn.LSTM, same weights, same process, alternating runs.

    lstmbyhand bench                          # the five rows of issue 4, CPU, default threads
    lstmbyhand bench --rows 50,32,64,64,1 --repeats 31
    lstmbyhand bench --device cuda            # where a GPU exists
    python -m lstmbyhand bench --no-fit       # skip the tiny-model training comparison

For each row (T, B, I, H, layers) both models get the same weights (ours copied into nn.LSTM) and the
same input x (T, B, I). A *training step* is zero_grad + forward + backward of output.sum(); *inference*
is a forward pass under torch.no_grad(). Each sample times a loop calibrated to take ~`--sample-ms`;
the implementations alternate sample by sample (the first one alternating too), and the table reports
median(ours) / median(nn.LSTM): below 1.0 is faster. The machine is shared and noisy: compare ratios,
not absolute times.

The last table trains the seed's model (`LSTMbyHand(4, 1)` on its two-sequence data): our
`train_model` (whole loop compiled, `fit_adam`, when built) against nn.LSTM + torch.optim.Adam written
the usual way, in Adam steps per second.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

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
    return row  # type: ignore[return-value]


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
    parser.add_argument("--fit-epochs", type=int, default=2000, help="epochs for the fit table")
    parser.set_defaults(func=main)
    return parser


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _calibrate(fn: Callable[[], object], device: torch.device, sample_ms: float) -> int:
    """Loop count for one sample of about sample_ms (after a warm-up)."""
    for _ in range(3):
        fn()
    _sync(device)
    n, elapsed = 1, 0.0
    while True:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        _sync(device)
        elapsed = time.perf_counter() - start
        if elapsed * 1e3 >= sample_ms / 4 or n >= 1 << 16:
            break
        n *= 2
    return max(1, round(n * sample_ms / max(elapsed * 1e3, 1e-6)))


def compare(
    ours: Callable[[], object],
    theirs: Callable[[], object],
    device: torch.device,
    repeats: int,
    sample_ms: float,
) -> tuple[float, float]:
    """Median seconds per call of ours and theirs, timed alternately."""
    loops = max(_calibrate(ours, device, sample_ms), _calibrate(theirs, device, sample_ms))
    times: dict[int, list[float]] = {0: [], 1: []}
    fns = (ours, theirs)
    for r in range(repeats):
        for k in (0, 1) if r % 2 == 0 else (1, 0):
            _sync(device)
            start = time.perf_counter()
            for _ in range(loops):
                fns[k]()
            _sync(device)
            times[k].append((time.perf_counter() - start) / loops)
    return statistics.median(times[0]), statistics.median(times[1])


def bench_row(row, device: torch.device, repeats: int, sample_ms: float) -> dict[str, float]:
    from lstmbyhand.layers import LSTM

    T, B, I, H, L = row
    torch.manual_seed(0)
    ours = LSTM(I, H, num_layers=L, device=device)
    theirs = nn.LSTM(I, H, num_layers=L, device=device)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(T, B, I, device=device)

    def train_step(model):
        def step():
            model.zero_grad(set_to_none=True)
            out, _ = model(x)
            out.sum().backward()

        return step

    def infer(model):
        def run():
            with torch.no_grad():
                model(x)

        return run

    with torch.no_grad():  # same function before timing it
        a, b = ours(x)[0], theirs(x)[0]
    err = (a - b).abs().max().item()
    t_ours, t_theirs = compare(train_step(ours), train_step(theirs), device, repeats, sample_ms)
    i_ours, i_theirs = compare(infer(ours), infer(theirs), device, repeats, sample_ms)
    return {
        "train_ours": t_ours,
        "train_torch": t_theirs,
        "infer_ours": i_ours,
        "infer_torch": i_theirs,
        "max_abs_diff": err,
    }


def bench_fit(epochs: int, repeats: int) -> dict[str, float]:
    """Adam steps per second on the seed's model: our train_model vs nn.LSTM + torch.optim.Adam."""
    from lstmbyhand.seed import LSTMbyHand, dataLoader

    batches = [(x, y) for x, y in dataLoader()]
    steps = epochs * len(batches)

    def ours() -> None:
        torch.manual_seed(0)
        LSTMbyHand(4, 1).train_model(batches, max_epoch=epochs, tol=None, progress=False)

    torch_epochs = max(1, epochs // 20)

    def theirs() -> None:
        torch.manual_seed(0)
        lstm = nn.LSTM(4, 1, batch_first=True)
        opt = torch.optim.Adam(lstm.parameters(), lr=1e-3)
        data = [(x.reshape(-1, 1, 4), y.reshape(-1, 1)) for x, y in batches]
        for _ in range(torch_epochs):
            for x, y in data:
                opt.zero_grad()
                _, (h_n, _) = lstm(x)
                loss = nn.functional.mse_loss(h_n[-1], y)
                loss.backward()
                opt.step()

    t_ours, t_theirs = [], []
    for r in range(repeats):
        for k in (0, 1) if r % 2 == 0 else (1, 0):
            start = time.perf_counter()
            (ours if k == 0 else theirs)()
            (t_ours if k == 0 else t_theirs).append(time.perf_counter() - start)
    return {
        "ours": steps / statistics.median(t_ours),
        "torch": torch_epochs * len(batches) / statistics.median(t_theirs),
    }


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as f:
                name = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
        except (OSError, StopIteration):
            pass
    return f"{name}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def main(args: argparse.Namespace) -> int:
    from lstmbyhand import native

    if args.repeats < 1:
        from lstmbyhand.cli import UserError

        raise UserError(f"--repeats: expected a positive int, got {args.repeats}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        from lstmbyhand.cli import UserError

        raise UserError("--device cuda: no CUDA device is available")
    path = "compiled (lstmbyhand._native)" if native.available() else "PyTorch ops (not compiled)"
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
