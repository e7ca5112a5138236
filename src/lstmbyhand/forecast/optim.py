"""torch.optim.Adam with its state as plain tensors + JSON, so checkpoints need no pickle.

torch.optim.Adam keeps, per parameter, the first and second moments (`exp_avg`, `exp_avg_sq`) and
the step count. `state_tensors()` names them by the parameter's position ("m.0", "v.0", ...) for a
safetensors file; `settings()` gives the step count and hyper-parameters as JSON; `load` puts them
back, so a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


class Adam:
    """A torch.optim.Adam over `params`, with `state_tensors`, `settings` and `load` for checkpoints."""

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if not lr > 0:
            raise ValueError(f"expected lr > 0, got {lr}")
        self.params = [p for p in params if p.requires_grad]
        self.torch_optimizer = torch.optim.Adam(self.params, lr=lr, betas=betas, eps=eps)

    @property
    def group(self) -> dict:
        return self.torch_optimizer.param_groups[0]

    @property
    def lr(self) -> float:
        return self.group["lr"]

    @property
    def t(self) -> int:
        """Steps taken so far."""
        state = self.torch_optimizer.state.get(self.params[0]) if self.params else None
        return int(state["step"]) if state else 0

    def _moment(self, key: str) -> list[Tensor]:
        state = self.torch_optimizer.state
        return [state[p][key] if p in state else torch.zeros_like(p) for p in self.params]

    @property
    def m(self) -> list[Tensor]:
        return self._moment("exp_avg")

    @property
    def v(self) -> list[Tensor]:
        return self._moment("exp_avg_sq")

    def zero_grad(self) -> None:
        self.torch_optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        self.torch_optimizer.step()

    def state_tensors(self) -> dict[str, Tensor]:
        """m and v per parameter, by position: {"m.0": ..., "v.0": ..., ...}."""
        out = {f"m.{i}": m for i, m in enumerate(self.m)}
        out.update({f"v.{i}": v for i, v in enumerate(self.v)})
        return out

    def settings(self) -> dict:
        return {
            "t": self.t,
            "lr": self.lr,
            "betas": list(self.group["betas"]),
            "eps": self.group["eps"],
        }

    def load(self, tensors: dict[str, Tensor], settings: dict) -> None:
        """Restore from `state_tensors` and `settings`; shapes must match the parameters."""
        restored = {}
        for i, p in enumerate(self.params):
            for name in ("m", "v"):
                t = tensors[f"{name}.{i}"]
                if t.shape != p.shape:
                    raise ValueError(
                        f"expected {name}.{i} of shape {tuple(p.shape)}, got {tuple(t.shape)}"
                    )
            restored[p] = {
                "step": torch.tensor(float(settings["t"])),
                "exp_avg": tensors[f"m.{i}"].to(device=p.device, dtype=p.dtype).clone(),
                "exp_avg_sq": tensors[f"v.{i}"].to(device=p.device, dtype=p.dtype).clone(),
            }
        state = self.torch_optimizer.state
        state.clear()
        if int(settings["t"]) > 0:
            state.update(restored)
        self.group.update(
            lr=float(settings["lr"]),
            betas=tuple(float(b) for b in settings["betas"]),
            eps=float(settings["eps"]),
        )
