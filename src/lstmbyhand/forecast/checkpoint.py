"""The resumable training state, as tensors + JSON (no pickle): what `--resume` needs to continue.

Tensors, by name:

- ``model.<name>``: current weights; ``best.<name>``: the best weights so far
- ``optim.m.<i>``, ``optim.v.<i>``: Adam's moments per parameter (see optim.py)
- ``rng.torch``: torch.get_rng_state(); under torchrun also ``rng.torch.<rank>`` for every rank
- ``rng.cuda``: the CUDA RNG states, when CUDA was used

JSON (the file's metadata): epoch, best_val, best_epoch, bad_epochs, history (one metrics row per
finished epoch) and optim (Adam's step count t, lr, betas, eps). The order of the training windows
is a function of the seed and the epoch, so it needs no state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lstmbyhand.errors import UserError
from lstmbyhand.forecast.optim import Adam


@dataclass
class Progress:
    """Where training stands after a finished epoch (0: none yet)."""

    epoch: int = 0
    best_val: float = float("inf")
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        best = self.best_val if self.best_val != float("inf") else None
        return {
            "epoch": self.epoch,
            "best_val": best,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Progress:
        best = float("inf") if d["best_val"] is None else float(d["best_val"])
        return cls(int(d["epoch"]), best, int(d["best_epoch"]), int(d["bad_epochs"]), d["history"])


def pack(
    model: torch.nn.Module,
    best: dict[str, torch.Tensor],
    optimizer: Adam,
    progress: Progress,
    rank_rng: list[torch.Tensor] | None = None,
) -> tuple[dict[str, torch.Tensor], dict]:
    """Everything to resume from, split into tensors and JSON. rank_rng: every rank's RNG state."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"best.{k}": v for k, v in best.items()})
    tensors.update({f"optim.{k}": v for k, v in optimizer.state_tensors().items()})
    tensors["rng.torch"] = torch.get_rng_state()
    if rank_rng and len(rank_rng) > 1:
        tensors.update({f"rng.torch.{r}": state for r, state in enumerate(rank_rng)})
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    meta = progress.to_dict()
    meta["optim"] = optimizer.settings()
    return tensors, meta


def unpack(
    tensors: dict[str, torch.Tensor],
    meta: dict,
    model: torch.nn.Module,
    optimizer: Adam,
    where: str,
    rank: int = 0,
) -> tuple[dict[str, torch.Tensor], Progress]:
    """Restore model, optimizer and RNG in place; return the best weights and the progress."""
    try:
        current = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        model.load_state_dict(current)
        if set(best) != set(current):
            raise KeyError("best weights")
        optim = {k[6:]: v for k, v in tensors.items() if k.startswith("optim.")}
        optimizer.load(optim, meta["optim"])
        torch.set_rng_state(tensors.get(f"rng.torch.{rank}", tensors["rng.torch"]))
        if "rng.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(list(tensors["rng.cuda"]))
        progress = Progress.from_dict(meta)
    except (KeyError, ValueError, RuntimeError, TypeError) as err:
        raise UserError(
            f"the training state in {where} does not match this run ({type(err).__name__}); "
            "start over with --force"
        ) from None
    return best, progress
