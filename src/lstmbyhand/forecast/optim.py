"""Adam with its state as plain tensors + JSON, so checkpoints need no pickle.

The update is torch's own, `torch.optim.adam.adam` (the function torch.optim.Adam.step calls, with
its defaults), on moments kept here: per parameter the first and second moments m, v and the step
count t. Not the torch.optim.Adam class: its first step imports torch._dynamo (about 3 s of CPU,
as much as importing torch), which the functional form does not. `state_tensors()` names the
moments by the parameter's position ("m.0", "v.0", ...) for a safetensors file; `settings()` gives
the step count and hyper-parameters as JSON; `load` puts them back, so a resumed run continues
exactly as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor
from torch.optim.adam import adam


class Adam:
    """torch's Adam update over `params` (adam adds 1 to each step count in place), with
    `state_tensors`, `settings` and `load`."""

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
        self.lr, self.betas, self.eps = float(lr), (float(betas[0]), float(betas[1])), float(eps)
        self.steps = [torch.tensor(0.0) for _ in self.params]  # per parameter, as torch.optim keeps
        self.m = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.v = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]

    @property
    def t(self) -> int:
        """Steps taken so far."""
        return int(self.steps[0]) if self.params else 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One Adam step on every parameter that has a gradient (as torch.optim.Adam.step)."""
        live = [(i, p.grad) for i, p in enumerate(self.params) if p.grad is not None]
        adam([self.params[i] for i, _ in live], [g for _, g in live], [self.m[i] for i, _ in live],
             [self.v[i] for i, _ in live], [], [self.steps[i] for i, _ in live], amsgrad=False,
             beta1=self.betas[0], beta2=self.betas[1], lr=self.lr, weight_decay=0.0,
             eps=self.eps, maximize=False)  # fmt: skip

    def state_tensors(self) -> dict[str, Tensor]:
        """m and v per parameter, by position: {"m.0": ..., "v.0": ..., ...}."""
        out = {f"m.{i}": m for i, m in enumerate(self.m)}
        out.update({f"v.{i}": v for i, v in enumerate(self.v)})
        return out

    def settings(self) -> dict:
        return {"t": self.t, "lr": self.lr, "betas": list(self.betas), "eps": self.eps}

    def load(self, tensors: dict[str, Tensor], settings: dict) -> None:
        """Restore from `state_tensors` and `settings`; shapes must match the parameters."""
        for i, p in enumerate(self.params):
            for name in ("m", "v"):
                t = tensors[f"{name}.{i}"]
                if t.shape != p.shape:
                    raise ValueError(
                        f"expected {name}.{i} of shape {tuple(p.shape)}, got {tuple(t.shape)}"
                    )
        self.m = [tensors[f"m.{i}"].to(device=p.device, dtype=p.dtype).clone()
                  for i, p in enumerate(self.params)]  # fmt: skip
        self.v = [tensors[f"v.{i}"].to(device=p.device, dtype=p.dtype).clone()
                  for i, p in enumerate(self.params)]  # fmt: skip
        self.steps = [torch.tensor(float(settings["t"])) for _ in self.params]
        self.lr = float(settings["lr"])
        self.betas = (float(settings["betas"][0]), float(settings["betas"][1]))
        self.eps = float(settings["eps"])
