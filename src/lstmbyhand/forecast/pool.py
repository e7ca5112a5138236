"""Many series, one global network: each series prepared on its own, their windows pooled.

    pool = prepare_pool(settings, read_panel(...))
    pool.members[k]          # the `Prepared` of series k: its own split, scaler, base, covariates
    pool.tensors("train")    # every member's training windows, one after the other

Each series is split chronologically on its own (the fractions of its own length), its scaler and
covariate scaler are fitted on its own training part, its statistical base on its own values
before its test split. A series too short for the window and horizon is skipped (listed in
`skipped`, with its length; the CLI prints them as a warning); a file whose every series is too
short is refused. A file of one series is exactly `prepare`'s single series (its errors too).

Under torchrun, `prepare_pool(..., shard=(rank, world_size))` prepares only this rank's series
(`assign`: whole series, balanced by training windows, the same on every rank); with fewer series
than ranks it prepares them all and the ranks share the windows instead (`Pool.sharded` False).
What is decided over all series -- which are too short, the season -- is decided on every rank
from every series' length before the sharding, so it is the same everywhere. `load_panel(...,
shard=)` reads only what this rank's pool needs (`outline.py`): every series' length, then only
its own series' rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from lstmbyhand.errors import UserError
from lstmbyhand.forecast import distributed
from lstmbyhand.forecast.config import RunConfig, TrainSettings
from lstmbyhand.forecast.features import CovariateScaler
from lstmbyhand.forecast.panel import Panel, Reading, read_panel
from lstmbyhand.forecast.prepare import Prepared, prepare
from lstmbyhand.forecast.scaling import Scaler, reference
from lstmbyhand.forecast.windows import (
    fits,
    make_split,
    minimum_length,
    split_origins,
    split_sizes,
)

Scalers = dict[str, tuple[Scaler, CovariateScaler | None]]  # series id -> its scalers
LAZY_ABOVE = 200_000  # training windows beyond which they are made batch by batch (`Windows`)


class Windows(Dataset):
    """A part's windows over every series, made batch by batch and never all at once.

    Window i is window i - start_m of member m (the members' windows one after the other, as
    `Pool.tensors` stacks them). The DataLoader hands `__getitems__` a batch of indices (e.g. a
    DistributedSampler's); it returns that batch's (inputs (B, ·), targets (B, O)), each member's
    rows made by `Prepared.tensors(part, rows=...)`: the same numbers as the stacked tensors."""

    def __init__(self, members: list[Prepared], part: str) -> None:
        self.members = [m for m in members if len(m.origins[part])]
        self.part = part
        self.starts = np.cumsum([0, *(len(m.origins[part]) for m in self.members)])  # (M + 1,)
        first = self.members[0]
        # the target alone (no base, no covariates): every batch in one go from the joined values
        self.flat = first.base == "none" and first.covariates is None
        if self.flat:
            lengths = [len(m.series) for m in self.members]
            self.values = np.concatenate([m.series.values for m in self.members])  # (ΣN,)
            self.offset = np.cumsum([0, *lengths])[:-1]  # (M,) where each series starts
            self.first = np.array([m.origins[part][0] for m in self.members])  # (M,)
            self.center = np.array([m.scaler.center for m in self.members])  # (M,)
            self.scale = np.array([m.scaler.scale for m in self.members])  # (M,)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([i])
        return x[0], y[0]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        at = np.asarray(indices, dtype=np.int64)  # (B,)
        which = np.searchsorted(self.starts, at, side="right") - 1  # (B,) member of each
        if self.flat:
            return self._flat(at, which)
        order = np.argsort(which, kind="stable")  # grouped by member, then back in batch order
        xs, ys = [], []
        for m in np.unique(which):
            rows = at[which == m] - self.starts[m]
            x, y = self.members[m].tensors(self.part, rows=rows)
            xs.append(x)
            ys.append(y)
        back = torch.as_tensor(np.argsort(order, kind="stable"))
        return torch.cat(xs)[back], torch.cat(ys)[back]

    def _flat(self, at: np.ndarray, which: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Window at[i] of member which[i], scaled by its member's scaler, for all i at once:
        `Prepared.tensors`' arithmetic on the joined values."""
        first = self.members[0]
        W, H = first.window, first.steps(self.part)
        origin = self.offset[which] + self.first[which] + (at - self.starts[which])  # (B,)
        x = self.values[origin[:, None] + np.arange(-W + 1, 1)]  # (B, W)
        y = self.values[origin[:, None] + np.arange(1, H + 1)]  # (B, H)
        shift, scale = reference(first.scaler.kind, x, self.center[which], self.scale[which])
        xs, ys = (x - shift) / scale, (y - shift) / scale
        return torch.as_tensor(xs, dtype=torch.float32), torch.as_tensor(ys, dtype=torch.float32)


def batches(batch: list | tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """The DataLoader's collate for `Windows`: its batches come made."""
    return batch  # type: ignore[return-value]


@dataclass
class Pool:
    """The prepared series of one panel that are long enough, and the ids of those that are not."""

    members: list[Prepared]
    panel: Panel
    skipped: dict[str, int]  # id -> length, too short for the window and horizon
    sharded: bool = False  # True: `members` are this rank's series only (see `assign`)
    n_train: dict[str, int] = field(default_factory=dict)  # every kept series' training values

    @property
    def season(self) -> int:
        return self.members[0].season

    @property
    def ids(self) -> list[str]:
        return [m.series.id for m in self.members]

    def count(self, part: str) -> int:
        """Windows of a part, over all series."""
        return sum(len(m.origins[part]) for m in self.members)

    def tensors(self, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Every series' network inputs (K, ·) and scaled targets (K, O) of a part, concatenated."""
        pairs = [m.tensors(part) for m in self.members if len(m.origins[part])]
        if not pairs:
            raise ValueError(f"expected windows in the {part} part, got none")
        if len(pairs) == 1:
            return pairs[0]
        return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])

    def dataset(self, part: str) -> Windows | TensorDataset:
        """The part's windows: stacked tensors, or `Windows` (batch by batch) above LAZY_ABOVE."""
        if self.count(part) > LAZY_ABOVE:
            return Windows(self.members, part)
        return TensorDataset(*self.tensors(part))

    def scalers_dict(self) -> dict:
        """{"series": [{id, scaler, covariates}]}: every member's scalers, JSON-ready."""
        return {"series": [
            {"id": m.series.id, "scaler": m.scaler.to_dict(),
             "covariates": m.covariate_scaler.to_dict() if m.covariate_scaler else None}
            for m in self.members]}  # fmt: skip


def skipped_line(s: TrainSettings, skipped: dict[str, int]) -> str:
    """One line naming the series skipped as too short, with their lengths."""
    need = minimum_length(s.window, s.horizon, s.val_fraction, s.test_fraction)
    listed = ", ".join(f"{k!r} ({n})" for k, n in skipped.items())
    return (f"skipped {len(skipped)} series too short for window {s.window} + horizon "
            f"{s.horizon} (each needs at least {need} values): {listed}")  # fmt: skip


def load_panel(
    s: TrainSettings,
    data: str | None = None,
    column_hint: str | None = None,
    shard: tuple[int, int] | None = None,
) -> Panel:
    """The settings' data file (or `data`) read as `panel.read_panel` reads it. `shard`: (rank,
    world_size): only the series this rank will prepare (`outline.py`'s two passes), plus the
    file's first series and first long-enough one (every rank checks the time column and takes
    the season from them) and every world_size-th too-short one (read only to check it: one
    process refuses a bad cell in a skipped series too). Every rank must call it: a series that
    cannot be made raises, on every rank, the error a single process meets first. The whole file
    when there are fewer long-enough series than ranks, one series, or a file `outline` leaves
    to `read_panel` (its error is then the one-process one)."""
    covariates = tuple(s.past_covariates + s.future_covariates)
    path = data or s.data
    reading = Reading(s.target, s.time, s.id, s.fill, covariates, column_hint)
    plan = None
    if shard is not None and shard[1] > 1:
        from lstmbyhand.forecast.outline import outline

        plan = outline(path, reading)
    share = shares(s, plan.lengths, shard[1]) if plan is not None and shard else None
    if plan is None or shard is None or share is None:
        return read_panel(path, *reading)
    rank, world_size = shard
    short, kept, owner = share
    mine = {k for k in kept if owner[k] == rank} | {plan.ids[0], kept[0]}
    mine |= {k for i, k in enumerate(short) if i % world_size == rank}
    from lstmbyhand.forecast.outline import read_part, require_first_time

    panel, failure = read_part(plan, mine)
    distributed.first_failure(failure)
    require_first_time(panel, plan)
    return panel


def shares(
    s: TrainSettings, lengths: dict[str, int], world_size: int
) -> tuple[dict[str, int], list[str], dict[str, int]] | None:
    """(the series too short, by id -> length; the kept ones in the file's order; the rank of
    each kept one, `assign`'s), or None when fewer series are kept than there are ranks (every
    rank then prepares every series and the ranks share the windows)."""
    short = {k: n for k, n in lengths.items() if not _long_enough(s, n)}
    kept = [k for k in lengths if k not in short]
    if world_size < 2 or len(kept) < world_size:
        return None
    owner = assign([train_windows(s, lengths[k]) for k in kept], world_size)
    return short, kept, dict(zip(kept, owner, strict=True))


def assign(counts: list[int], ranks: int) -> list[int]:
    """The rank of each series, counts[k] its training windows: longest first, each to the rank
    with the fewest windows so far (ties: the lower rank). Deterministic, so every rank computes
    the same; the largest load exceeds the mean by at most the largest single series."""
    load = [0] * ranks
    owner = [0] * len(counts)
    for k in sorted(range(len(counts)), key=lambda k: (-counts[k], k)):
        r = min(range(ranks), key=lambda r: (load[r], r))
        owner[k] = r
        load[r] += counts[k]
    return owner


def train_windows(s: TrainSettings, n: int) -> int:
    """Training windows of a series of n values under the settings (as `prepare` makes them)."""
    split = make_split(n, s.window, s.horizon, s.val_fraction, s.test_fraction)
    return len(split_origins(split, s.window, s.model.outputs)["train"])


def prepare_pool(
    s: TrainSettings,
    panel: Panel,
    scalers: Scalers | None = None,
    shard: tuple[int, int] | None = None,
) -> Pool:
    """Prepare every series long enough for the settings (see the module docstring). `scalers`:
    the run's, by id (evaluate, forecast); None: fitted on each training part. `shard`: (rank,
    world_size): only this rank's series, when there are at least as many as ranks."""
    if panel.layout == "single":  # exactly one series, as before: its own errors
        one = panel.series[0]
        given = (scalers or {}).get(one.id, (None, None))
        member = prepare(s, one, *given)
        return Pool([member], panel, {}, n_train={one.id: member.parts.n_train})
    lengths = panel.lengths  # every series', those another rank holds too
    short = {k: n for k, n in lengths.items() if not _long_enough(s, n)}
    if len(short) == len(lengths):
        need = minimum_length(s.window, s.horizon, s.val_fraction, s.test_fraction)
        raise UserError(
            f"every series in {panel.path} is too short for window {s.window} + horizon "
            f"{s.horizon} (each needs at least {need} values; the longest has "
            f"{max(short.values())}); use a smaller --window or --horizon"
        )
    held = {x.id: x for x in panel.series}
    kept = [k for k in lengths if k not in short]
    if s.season is None:  # the frequency's season, if every series' training part can hold it
        season = held[kept[0]].season
        shortest = min(split_sizes(lengths[k], s.val_fraction, s.test_fraction).n_train
                       for k in kept)  # fmt: skip
        s = replace(s, season=season if season < shortest else 0)
    n_train = {k: split_sizes(lengths[k], s.val_fraction, s.test_fraction).n_train for k in kept}
    share = shares(s, lengths, shard[1]) if shard is not None else None
    sharded = share is not None
    if share is not None:
        owner = share[2]
        kept = [k for k in kept if owner[k] == shard[0]]  # type: ignore[index]
    elif panel.partial:
        raise ValueError("expected the whole file for a pool that is not sharded by series")
    members, failure = [], None
    for k in kept:
        given = scalers.get(k, (None, None)) if scalers is not None else (None, None)
        try:
            members.append(prepare(s, held[k], *given))
        except UserError as err:  # e.g. a scaler that is not finite: the same line on every rank
            if not sharded:
                raise
            failure = (list(lengths).index(k), str(err))
            break
    if sharded:
        distributed.first_failure(failure)
    return Pool(members, panel, short, sharded, n_train)


def run_scalers(config: RunConfig, where: str) -> Scalers:
    """The scalers saved in a run's config, by series id (features.py, scaling.py)."""
    if config.panel is None:
        return {"": (Scaler.from_dict(config.scaler, where), None)}
    columns = len(config.model.past_covariates) + len(config.model.future_covariates)
    return scalers_from(config.panel.get("series"), columns, where)


def scalers_from(rows: object, columns: int, where: str) -> Scalers:
    """Scalers by id from the rows `Pool.scalers_dict` writes; any damage is one `UserError`."""
    out: Scalers = {}
    try:
        for row in rows:  # type: ignore[attr-defined]
            cov = row["covariates"]
            cov = CovariateScaler.from_dict(cov, columns, where) if cov is not None else None
            out[str(row["id"])] = (Scaler.from_dict(row["scaler"], where), cov)
    except (KeyError, TypeError) as err:
        raise UserError(f"{where}: the series' scalers are damaged ({err}); train again") from None
    return out


def _long_enough(s: TrainSettings, n: int) -> bool:
    split = split_sizes(n, s.val_fraction, s.test_fraction)
    return fits(split, s.window, s.horizon, s.val_fraction, s.test_fraction)
