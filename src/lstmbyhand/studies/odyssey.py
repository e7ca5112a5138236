"""LSTM: A Search Space Odyssey (Greff, Srivastava, Koutník, Steunebrink, Schmidhuber 2017), in small.

The paper trains eight variants of the LSTM cell, each one change away from the vanilla LSTM V, on
speech (TIMIT), handwriting (IAM Online) and music (JSB Chorales). Here, each a `lstmbyhand.LSTM`:

    V     vanilla: peepholes p ⊙ c into i, f (c_{t-1}) and o (c_t); every gate; g = tanh, h = o ⊙ tanh(c)
    NIG   no input gate            i = 1
    NFG   no forget gate           f = 1
    NOG   no output gate           o = 1
    NIAF  no input activation      g = z_g            (no tanh on the candidate)
    NOAF  no output activation     h = o ⊙ c          (no tanh on the cell)
    NP    no peepholes             (torch.nn.LSTM's cell)
    CIFG  coupled input and forget gate   f = 1 - i   (keeps V's peepholes into i and o)

FGR, full gate recurrence (every gate also reads the previous step's i, f, o through nine more H×H
matrices), is left out: the cell's declaration (`nn/variants.py`) has no gate-to-gate recurrence,
and the paper found it never helped and cost the most parameters.

The task: monthly mean sunspot numbers, January 1749 to December 2008 (3120 months; NOAA's National
Geophysical Data Center, public domain, as shipped in statsmodels' sources; `datasets/sunspots.csv`).
At every month t the network reads one number, the scaled count z_t, and forecasts the next
`horizon` months z_{t+1..t+K} (a linear head on h_t). Two years ahead, the count is not the last
one seen: it depends on where the ~11-year cycle stands and how strong this cycle is, which the
network can only know from the months it has read, so the state must carry it (the role of the
forget gate and of the cell). Like the paper's next-step prediction of JSB Chorales, every step of
a sequence is a prediction and the loss is summed over them.

    train   windows of `context` months, every `stride` months, inside 1749 .. (end - test_years);
            loss: mean squared error of z over every step and horizon; Adam, gradient norm clipped
    test    every origin τ whose K targets lie in the last `test_years` years: the network reads
            the `context` months up to τ from the zero state; metric: RMSE over the K horizons, in
            sunspot numbers (lower is better)

z = (count - mean) / std with the mean and std of the training months only. Every variant gets the
same settings and, for seed s, the same data order; its initial weights come from the same
`torch.manual_seed(s)` (variants differ in shape, so they are not the same numbers).
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from importlib import resources
from statistics import fmean, median, stdev

import torch
from torch import Tensor, nn

from lstmbyhand.nn import LSTM

DATASET = "sunspots.csv"  # month,sunspots (lstmbyhand/datasets/)


@dataclass(frozen=True)
class Variant:
    """One of the paper's variants: what it changes, and the `lstmbyhand.LSTM` options that make it."""

    what: str
    peephole: bool = True
    coupled: bool = False
    ablate: tuple[str, ...] = ()


VARIANTS = {  # the paper's order (its Figure 3), V first: the ratios are to V
    "V": Variant("vanilla: peepholes, all gates, both tanh"),
    "NIG": Variant("no input gate (i = 1)", ablate=("input_gate",)),
    "NFG": Variant("no forget gate (f = 1)", ablate=("forget_gate",)),
    "NOG": Variant("no output gate (o = 1)", ablate=("output_gate",)),
    "NIAF": Variant("no input activation (g = z_g)", ablate=("input_activation",)),
    "NOAF": Variant("no output activation (h = o * c)", ablate=("output_activation",)),
    "NP": Variant("no peepholes (torch.nn.LSTM's cell)", peephole=False),
    "CIFG": Variant("coupled input and forget gate (f = 1 - i)", coupled=True),
}


@dataclass(frozen=True)
class Settings:
    """Everything a run depends on besides the variant and the seed (the CLI's flags)."""

    hidden: int = 32  # H
    context: int = 144  # months a sequence holds (12 years, one cycle and a bit)
    horizon: int = 24  # K: months forecast at every step
    stride: int = 12  # months between the starts of two training windows
    test_years: int = 60  # the last 60 years (1949-2008) are the test span
    epochs: int = 20
    batch: int = 32
    lr: float = 0.01  # Adam
    clip: float = 1.0  # gradient norm

    def check(self) -> None:
        """Refuse settings no run can use, with 'expected X, got Y'."""
        for name in ("hidden", "context", "horizon", "stride", "test_years", "epochs", "batch"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a whole number ≥ 1, got {value!r}")
        for name in ("lr", "clip"):
            value = getattr(self, name)
            if not (isinstance(value, float | int) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a positive number, got {value!r}")


@dataclass
class Task:
    """The sunspot task cut for one `Settings`: scaled windows and the test's targets."""

    train_x: Tensor  # (N, L, 1) z
    train_y: Tensor  # (N, L, K) z_{t+1..t+K} for every step t of each window
    test_x: Tensor  # (M, L, 1) the context up to each test origin
    test_y: Tensor  # (M, K) the counts that followed, unscaled
    mean: float
    std: float
    baseline_rmse: float  # the last 12 months' mean held for all K months


@dataclass
class Run:
    """One variant trained from one seed."""

    variant: str
    seed: int
    test_rmse: float
    train_loss: list[float]  # per epoch, mean over its batches
    largest_cell: float  # max |c_t| over every step of every test context
    seconds: float


@dataclass
class Summary:
    """A variant's runs, summarized: mean, sample std and median of the test RMSE, ratio of means
    to V's."""

    variant: str
    rmse: list[float]
    mean: float
    std: float  # 0 for one seed
    median: float
    ratio: float | None  # None when V was not run
    largest_cell: float  # mean over the seeds of each run's max |c_t|
    seconds: float  # mean seconds a run took


@dataclass
class Study:
    settings: Settings
    seeds: list[int]
    runs: list[Run] = field(default_factory=list)
    baseline_rmse: float = math.nan

    def summaries(self) -> list[Summary]:
        names = list(dict.fromkeys(run.variant for run in self.runs))
        means = {}
        out = []
        for name in names:
            runs = [run for run in self.runs if run.variant == name]
            rmse = [run.test_rmse for run in runs]
            means[name] = fmean(rmse)
            spread = stdev(rmse) if len(rmse) > 1 else 0.0
            cell, seconds = fmean(r.largest_cell for r in runs), fmean(r.seconds for r in runs)
            out.append(Summary(name, rmse, means[name], spread, median(rmse), None, cell, seconds))
        for summary in out:
            summary.ratio = summary.mean / means["V"] if "V" in means else None
        return out

    def to_dict(self) -> dict[str, object]:
        """Everything, as JSON-ready values."""
        return {
            "task": "monthly sunspot numbers 1749-2008: forecast the next `horizon` months at "
            "every month; test RMSE over the last `test_years` years",
            "settings": asdict(self.settings),
            "seeds": self.seeds,
            "baseline_rmse": self.baseline_rmse,
            "summary": [asdict(s) for s in self.summaries()],
            "runs": [asdict(r) for r in self.runs],
        }


def load_sunspots() -> Tensor:
    """The 3120 monthly counts, January 1749 to December 2008, as a float32 tensor (T,)."""
    text = resources.files("lstmbyhand").joinpath("datasets", DATASET).read_text()
    rows = list(csv.DictReader(text.splitlines()))
    return torch.tensor([float(row["sunspots"]) for row in rows])


def make_task(series: Tensor, settings: Settings) -> Task:
    """Cut the series (T,) into the training windows and the test origins (module docstring)."""
    L, K = settings.context, settings.horizon
    split = len(series) - 12 * settings.test_years  # first test month
    if split < L + K or len(series) - split < K:
        raise ValueError(
            f"expected a series longer than context + horizon on each side of the split, got "
            f"{len(series)} months with {settings.test_years} test years, context {L}, horizon {K}"
        )
    train = series[:split]
    mean, std = train.mean().item(), train.std().item()
    z = (series - mean) / std  # (T,)
    windows = z[:split].unfold(0, L + K, settings.stride)  # (N, L+K)
    train_x = windows[:, :L].unsqueeze(-1)  # (N, L, 1)
    train_y = windows.unfold(1, K, 1)[:, 1 : L + 1]  # (N, L, K): step t -> z_{t+1..t+K}
    origins = range(split - 1, len(series) - K)  # τ: targets τ+1..τ+K all in the test span
    test_x = torch.stack([z[t - L + 1 : t + 1] for t in origins]).unsqueeze(-1)  # (M, L, 1)
    test_y = torch.stack([series[t + 1 : t + 1 + K] for t in origins])  # (M, K)
    last_year = torch.stack([series[t - 11 : t + 1].mean() for t in origins])  # (M,)
    baseline = ((test_y - last_year[:, None]) ** 2).mean().sqrt().item()
    return Task(train_x, train_y, test_x, test_y, mean, std, baseline)


class Forecaster(nn.Module):
    """One LSTM layer of the variant and a linear head: x (B, L, 1) -> forecasts (B, L, K)."""

    def __init__(self, variant: Variant, hidden: int, horizon: int) -> None:
        super().__init__()
        self.lstm = LSTM(
            1, hidden, batch_first=True,
            peephole=variant.peephole, coupled=variant.coupled, ablate=variant.ablate,
        )  # fmt: skip
        self.head = nn.Linear(hidden, horizon)

    def forward(self, x: Tensor) -> Tensor:
        h, _ = self.lstm(x)  # (B, L, H)
        return self.head(h)  # (B, L, K)


def build_model(name: str, settings: Settings, seed: int) -> Forecaster:
    """The variant `name`, its weights drawn after `torch.manual_seed(seed)`."""
    if name not in VARIANTS:
        raise ValueError(f"variant: expected one of {', '.join(VARIANTS)}, got {name!r}")
    torch.manual_seed(seed)
    return Forecaster(VARIANTS[name], settings.hidden, settings.horizon)


def score(model: Forecaster, task: Task) -> float:
    """RMSE in sunspot numbers of the forecasts from the last step of every test context."""
    model.eval()
    with torch.no_grad():
        z = model(task.test_x)[:, -1]  # (M, K)
    model.train()
    forecast = z * task.std + task.mean  # (M, K)
    return ((forecast - task.test_y) ** 2).mean().sqrt().item()


def largest_cell(model: Forecaster, task: Task) -> float:
    """max |c_t| over every step of every test context, from the gate trace: how far the cell
    state runs (without a forget gate it only adds up; without the output tanh h shows it)."""
    trace = model.lstm.trace(task.test_x)[0][0]  # fields (L, M, H)
    return trace.cell.abs().max().item()


def train_one(name: str, seed: int, task: Task, settings: Settings) -> Run:
    """Train variant `name` from `seed` for `settings.epochs` epochs; test it."""
    start = time.perf_counter()
    model = build_model(name, settings, seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    order = torch.Generator().manual_seed(seed)  # the data order: the same for every variant
    N = len(task.train_x)
    losses = []
    for _ in range(settings.epochs):
        total = 0.0
        batches = torch.randperm(N, generator=order).split(settings.batch)
        for rows in batches:
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(task.train_x[rows]), task.train_y[rows])
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), settings.clip)
            optimizer.step()
            total += loss.item()
        losses.append(total / len(batches))
    rmse, cell = score(model, task), largest_cell(model, task)
    return Run(name, seed, rmse, losses, cell, time.perf_counter() - start)


def run_study(
    variants: Iterable[str],
    seeds: Iterable[int],
    settings: Settings | None = None,
    progress: Callable[[Run], None] | None = None,
    task: Task | None = None,
) -> Study:
    """Train every variant from every seed (seed-major, so a stopped study has whole seeds) on
    `task`, by default `make_task(load_sunspots(), settings)`."""
    settings = settings or Settings()
    settings.check()
    names, seed_list = list(variants), list(seeds)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        got = repr(unknown[0]) if unknown else "none"
        raise ValueError(f"variants: expected names from {', '.join(VARIANTS)}, got {got}")
    if not seed_list:
        raise ValueError("seeds: expected at least one seed, got none")
    task = task or make_task(load_sunspots(), settings)
    study = Study(settings, seed_list, baseline_rmse=task.baseline_rmse)
    for seed in seed_list:
        for name in names:
            run = train_one(name, seed, task, settings)
            study.runs.append(run)
            if progress is not None:
                progress(run)
    return study
