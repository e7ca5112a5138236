"""Training on several processes with torch.distributed: what `train.py` needs, nothing more.

    torchrun --standalone --nproc_per_node=2 -m lstmbyhand train DATA.csv --target COL ...

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous address in each process's environment;
`init_from_env` joins the process group (gloo on CPU, NCCL on CUDA). Every rank reads every
series' id and length, then only its own series' rows (`outline.py`; `first_failure` makes a bad
cell in any rank's series the same one-line error on every rank), and builds the same model from
the same seed. With at least as many series as ranks, each rank
prepares and windows only its own series (`pool.assign`: whole series, balanced by windows) and
`ShardSampler` shuffles them, every rank taking the same number of steps; with fewer series (one
series), every rank prepares them all and a DistributedSampler gives each rank its share of every
epoch's shuffled windows. DistributedDataParallel averages the gradients; losses are summed over
ranks; `gather` brings the per-series results (scalers, statistical forecasts) to rank 0, the only
rank that writes. Without torchrun (WORLD_SIZE unset or 1) every function here is a cheap no-op.
"""

from __future__ import annotations

import gc
import hashlib
import os

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank_and_size() -> tuple[int, int]:
    """(rank, world_size): (0, 1) unless a process group is running."""
    return (dist.get_rank(), dist.get_world_size()) if active() else (0, 1)


def choose_device(name: str) -> torch.device:
    """The device for "auto", "cpu" or "cuda"; under torchrun on CUDA, the GPU of this LOCAL_RANK.

    "auto" takes CUDA only when every process of this node can have a GPU of its own (NCCL refuses
    two ranks on one GPU); otherwise it takes the CPU (gloo). "cuda" without enough GPUs is an error.
    """
    from lstmbyhand.errors import UserError

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if name == "auto":
        name = "cuda" if gpus >= per_node else "cpu"
    if name == "cuda" and gpus == 0:
        raise UserError(
            "--device cuda was asked for but no CUDA device is available; use --device cpu"
        )
    if name == "cuda" and gpus < per_node:
        raise UserError(
            f"--device cuda: expected at most one process per GPU ({gpus} on this node), "
            f"got {per_node} processes; use --nproc_per_node={gpus} or --device cpu"
        )
    if name == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(name)


def init_from_env(device: str) -> bool:
    """Join the process group torchrun describes; True when one is (now) running."""
    if active():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    chosen = choose_device(device)
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    return True


def shutdown() -> None:
    """Leave the process group together and cleanly. The DistributedDataParallel wrapper sits in
    reference cycles; left to interpreter exit, its reducer outlives the process group and gloo
    aborts ("terminate called without an active exception", seen in about 1 run of 5 here)."""
    if active():
        gc.collect()  # free DDP and its reducer while the process group still exists
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def all_true(flag: bool, device: torch.device | None = None) -> bool:
    """True only if `flag` is true on every rank (so all ranks take the same branch)."""
    if not active():
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, in place; the tensor itself without a process group."""
    if active():
        dist.all_reduce(t)
    return t


def all_max(n: int, device: torch.device | None = None) -> int:
    """The largest `n` over ranks (`n` itself without a process group)."""
    if not active():
        return n
    t = torch.tensor([n], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def gather(obj: object) -> list | None:
    """Every rank's `obj` (picklable), in rank order, on rank 0; None on the other ranks. Every
    rank must call it. Without a process group: [obj]."""
    if not active():
        return [obj]
    out: list | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def first_failure(failure: tuple[int, str] | None) -> None:
    """Raise on every rank, as one `UserError`, the failure with the lowest position over all
    ranks -- (a series' position in the file, its one-line message), None where nothing failed --
    i.e. the error a single process meets first, going through the series in the file's order;
    return when no rank failed. Every rank must call it (one all_gather_object). A rank holds
    only its own series, so no rank alone can tell whether another's series is bad."""
    from lstmbyhand.errors import UserError

    every: list = [failure]
    if active():
        every = [None] * dist.get_world_size()
        dist.all_gather_object(every, failure)
    failures = [f for f in every if f is not None]
    if failures:
        raise UserError(min(failures)[1])


class ShardSampler(Sampler[int]):
    """This rank's own windows (0 .. n - 1) shuffled each epoch, `steps` of them: the permutation
    of a generator seeded with seed + epoch (as DistributedSampler seeds), repeated from its start
    up to `steps` (the largest rank's n), so that every rank takes the same number of batches --
    DistributedDataParallel needs every rank in every all-reduce."""

    def __init__(self, n: int, steps: int, seed: int) -> None:
        if n < 1 or steps < n:
            raise ValueError(f"expected 1 <= n <= steps, got n={n}, steps={steps}")
        self.n, self.steps, self.seed, self.epoch = n, steps, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.n, generator=g)  # (n,)
        repeats = -(-self.steps // self.n)
        return iter(order.repeat(repeats)[: self.steps].tolist())


def gather_rng_states() -> list[torch.Tensor]:
    """Every rank's torch RNG state, in rank order (only its own without a process group)."""
    mine = torch.get_rng_state()  # (5056,) uint8
    if not active():
        return [mine]
    states: list[torch.Tensor | None] = [None] * dist.get_world_size()
    dist.all_gather_object(states, mine)  # CPU tensors, whatever the backend
    return [state for state in states if state is not None]  # all filled in


def weights_agree(model: torch.nn.Module) -> bool:
    """True when every rank holds bit-identical parameters (what DDP promises)."""
    if not active():
        return True
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    digests: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(digests, h.hexdigest())
    return len(set(digests)) == 1
