"""Adam, written out (Kingma & Ba 2015), with the same arithmetic as torch.optim.Adam.

For each parameter p with gradient g, at step t = 1, 2, ...:

    m_t = β1 m_{t-1} + (1 - β1) g                 first moment (running mean of g)
    v_t = β2 v_{t-1} + (1 - β2) g²                second moment (running mean of g²)
    p  ← p - lr / (1 - β1^t) · m_t / (sqrt(v_t) / sqrt(1 - β2^t) + ε)

Why not torch.optim.Adam: constructing any torch.optim optimizer imports torch._dynamo, several
seconds on every `lstmbyhand train` start. Its state is plain tensors (m, v) and one integer (t),
so a checkpoint stores it as safetensors + JSON. `tests/test_train.py` checks it against
torch.optim.Adam step by step.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


class Adam:
    """Adam over a list of parameters; `zero_grad`, `step`, `state_tensors`, `load`."""

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = [p for p in params if p.requires_grad]
        if not lr > 0:
            raise ValueError(f"expected lr > 0, got {lr}")
        self.lr, self.betas, self.eps = float(lr), (float(betas[0]), float(betas[1])), float(eps)
        self.t = 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        self.t += 1
        step_size = self.lr / (1 - beta1**self.t)
        bias2_sqrt = (1 - beta2**self.t) ** 0.5
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            if p.grad is None:
                continue
            g = p.grad
            m.lerp_(g, 1 - beta1)  # m ← β1 m + (1 - β1) g
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)  # v ← β2 v + (1 - β2) g²
            denom = (v.sqrt() / bias2_sqrt).add_(self.eps)
            p.addcdiv_(m, denom, value=-step_size)

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
            for name, buf in (("m", self.m), ("v", self.v)):
                t = tensors[f"{name}.{i}"]
                if t.shape != p.shape:
                    raise ValueError(
                        f"expected {name}.{i} of shape {tuple(p.shape)}, got {tuple(t.shape)}"
                    )
                buf[i] = t.to(device=p.device, dtype=p.dtype).clone()
        self.t = int(settings["t"])
        self.lr = float(settings["lr"])
        self.betas = (float(settings["betas"][0]), float(settings["betas"][1]))
        self.eps = float(settings["eps"])
