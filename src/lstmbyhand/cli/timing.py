"""The timing harness behind `lstmbyhand bench` (see bench.py for what is measured and how).

Each sample times a loop calibrated to take ~`sample_ms`; the two implementations alternate sample by
sample, and callers compare medians.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


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
    from lstmbyhand.nn.layers import LSTM

    T, B, I, H, L = row
    torch.manual_seed(0)
    ours = LSTM(I, H, num_layers=L, device=device)
    theirs = nn.LSTM(I, H, num_layers=L, device=device)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(T, B, I, device=device)
    return time_both(ours, theirs, lambda m: m(x)[0], torch.sum, device, repeats, sample_ms)


def time_both(
    ours: nn.Module,
    theirs: nn.Module,
    output: Callable[[nn.Module], torch.Tensor],
    loss: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    repeats: int,
    sample_ms: float,
) -> dict[str, float]:
    """A training step (zero_grad, `output(model)`, `loss` of it, backward) and inference
    (`output(model)` under no_grad) of both models, alternating; and their largest output difference."""

    def train_step(model):
        def step():
            model.zero_grad(set_to_none=True)
            loss(output(model)).backward()

        return step

    def infer(model):
        def run():
            with torch.no_grad():
                output(model)

        return run

    with torch.no_grad():  # same function before timing it
        err = (output(ours) - output(theirs)).abs().max().item()
    t_ours, t_theirs = compare(train_step(ours), train_step(theirs), device, repeats, sample_ms)
    i_ours, i_theirs = compare(infer(ours), infer(theirs), device, repeats, sample_ms)
    return {
        "train_ours": t_ours,
        "train_torch": t_theirs,
        "infer_ours": i_ours,
        "infer_torch": i_theirs,
        "max_abs_diff": err,
    }


class _Sequence(nn.Module):
    """PyTorch's examples/time_sequence_prediction model: LSTMCell(1, 51) -> LSTMCell(51, 51) ->
    Linear(51, 1), float64, the cells called once per step from Python."""

    def __init__(self, cell: type[nn.Module], device: torch.device) -> None:
        super().__init__()
        factory: dict[str, Any] = {"device": device, "dtype": torch.float64}
        self.lstm1, self.lstm2 = cell(1, 51, **factory), cell(51, 51, **factory)
        self.linear = nn.Linear(51, 1, **factory)

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T)
        h1 = c1 = h2 = c2 = input.new_zeros(input.shape[0], 51)  # (B, 51)
        outputs = []
        for x_t in input.split(1, dim=1):  # (B, 1)
            h1, c1 = self.lstm1(x_t, (h1, c1))
            h2, c2 = self.lstm2(h1, (h2, c2))
            outputs.append(self.linear(h2))  # (B, 1)
        return torch.cat(outputs, dim=1)


def bench_cell(
    steps: int, device: torch.device, repeats: int, sample_ms: float
) -> dict[str, float]:
    """Our LSTMCell against nn.LSTMCell in `_Sequence` (batch 97, as the example trains it): a
    training step is zero_grad + the loop over `steps` inputs + MSE + backward; inference is the loop
    under torch.no_grad()."""
    from lstmbyhand.nn.layers import LSTMCell

    torch.manual_seed(0)
    ours, theirs = _Sequence(LSTMCell, device), _Sequence(nn.LSTMCell, device)
    theirs.load_state_dict(ours.state_dict())
    x, target = torch.randn(2, 97, steps, dtype=torch.float64, device=device)

    def mse(y: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(y, target)

    return time_both(ours, theirs, lambda m: m(x), mse, device, repeats, sample_ms)


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

    t_ours: list[float] = []
    t_theirs: list[float] = []
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
