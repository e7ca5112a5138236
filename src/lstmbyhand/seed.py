"""The seed's teaching model: `LSTMbyHand` and its `dataLoader()`, on top of `lstmbyhand.LSTM`.

    lstm = LSTMbyHand(input_size=4, hidden_size=1)
    lstm.train_model(dataLoader(), max_epoch=50000)
    print(round(lstm.predict(torch.tensor([0.0, 0.5, 0.25, 1.0]))[0].item(), 3))   # 0.0

The data (StatQuest's "Company A / Company B"): two stocks over four days,
Company A [0, 0.5, 0.25, 1] ends at 0, Company B [1, 0.5, 0.25, 1] ends at 1.

How the flat sequence is read depends on `input_size`: `LSTMbyHand(4, 1)` sees one step of four
features, `LSTMbyHand(1, 1)` four one-feature days. The lesson: from the zero state a single step gives
c = i·g with |c| < 1, so h = o·tanh(c) < tanh(1) ≈ 0.76 — `LSTMbyHand(4, 1)` can never predict
Company B's 1, while four steps can add up a cell state large enough.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, SequentialSampler, TensorDataset
from tqdm.auto import tqdm

from lstmbyhand.nn import native
from lstmbyhand.nn.gates import gate_views
from lstmbyhand.nn.layers import LSTM

ADAM_DEFAULTS: dict[str, Any] = {"betas": (0.9, 0.999), "eps": 1e-8}  # torch.optim.Adam's
COMPANY_A = [0.0, 0.5, 0.25, 1.0]
COMPANY_B = [1.0, 0.5, 0.25, 1.0]


def dataLoader(batch_size: int = 1) -> DataLoader:  # noqa: N802 - the seed's name
    """The seed's data: Company A [0, 0.5, 0.25, 1] -> 0 and Company B [1, 0.5, 0.25, 1] -> 1."""
    inputs = torch.tensor([COMPANY_A, COMPANY_B])  # (2, 4)
    labels = torch.tensor([0.0, 1.0])  # (2,)
    return DataLoader(TensorDataset(inputs, labels), batch_size=batch_size)


class ConvergenceRule:
    """Stop once the epoch loss has not improved on its best by more than `tol` for `patience` epochs.

    `tol=None` turns early stopping off: training then runs all `max_epoch` epochs.
    """

    def __init__(self, tol: float | None, patience: int) -> None:
        self.tol, self.patience = tol, patience
        self.best, self.since_best = math.inf, 0

    def converged(self, loss: float) -> bool:
        if loss < self.best - (self.tol or 0.0):
            self.best, self.since_best = loss, 0
        else:
            self.since_best += 1
        return self.tol is not None and self.since_best >= self.patience


class LSTMbyHand(nn.Module):
    """One LSTM layer from the zero state; the prediction is the final hidden state.

    Weights ~ N(0, 1) and biases zero, as in the seed. With `output_size`, a linear head maps the final
    hidden state to targets outside (-1, 1); without it the prediction is the hidden state itself.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.lstm = LSTM(input_size, hidden_size, batch_first=True, device=device, dtype=dtype)
        for name, param in self.lstm.named_parameters():
            nn.init.normal_(param) if name.startswith("weight") else nn.init.zeros_(param)
        self.head = None
        if output_size is not None:
            self.head = nn.Linear(hidden_size, output_size, device=device, dtype=dtype)
        self.input_size, self.hidden_size = input_size, hidden_size
        self._optimizer: torch.optim.Adam | None = None
        self._adam_state: dict[nn.Parameter, dict[str, Tensor]] = {}  # shared with _optimizer

    def gate_weights(self) -> dict[str, dict[str, Tensor]]:
        """Per gate (input, forget, candidate, output): its input weights, hidden weights and bias."""
        param = self.lstm.get_parameter
        W = gate_views(param("weight_ih_l0"))
        U = gate_views(param("weight_hh_l0"))
        b = gate_views(param("bias_ih_l0") + param("bias_hh_l0"))
        return {
            gate: {"input_weights": W[gate], "hidden_weights": U[gate], "bias": b[gate]}
            for gate in W
        }

    def as_batch(self, x: Tensor) -> Tensor:
        """Apply the shape rules: 1-D is one flat sequence, 2-D a batch of them, 3-D (B, T, I)."""
        if not isinstance(x, Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
        weight = self.lstm.get_parameter("weight_ih_l0")
        x = x.to(weight.device, weight.dtype)  # ints, float32 into float64, CPU data to a GPU model
        I = self.input_size
        if x.dim() in (1, 2):
            if x.shape[-1] % I != 0 or x.shape[-1] == 0:
                raise ValueError(
                    f"expected a flat sequence whose length is a non-zero multiple of input_size={I}, "
                    f"got shape {tuple(x.shape)}"
                )
            return x.reshape(-1, x.shape[-1] // I, I)  # (B, T, I)
        if x.dim() == 3:
            if x.shape[-1] != I or x.shape[1] == 0:
                raise ValueError(
                    f"expected shape (batch, steps, {I}) with steps > 0, got {tuple(x.shape)}"
                )
            return x
        raise ValueError(
            f"expected a 1-D, 2-D or 3-D tensor ((steps*{I},), (batch, steps*{I}) or (batch, steps, {I})), "
            f"got shape {tuple(x.shape)}"
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: see `as_batch` -> prediction (B, H or output_size), or (H or output_size,) for 1-D x."""
        _, (h_n, _) = self.lstm(self.as_batch(x))  # (1, B, H)
        y = h_n[-1]  # (B, H)
        if self.head is not None:
            y = self.head(y)  # (B, O)
        return y[0] if x.dim() == 1 else y

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """The prediction in eval mode without gradients: `predict(x)[0].item()` is the first value."""
        was_training = self.training
        self.eval()
        try:
            return self(x)
        finally:
            self.train(was_training)

    def _targets(self, y: Tensor, batch: int) -> Tensor:
        """Targets reshaped to the prediction's (B, O), O = output_size or hidden_size."""
        out = self.head.out_features if self.head is not None else self.hidden_size
        if not isinstance(y, Tensor) or y.numel() != batch * out:
            shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise ValueError(
                f"expected targets with {batch * out} values ({batch} x {out}), got {shape}"
            )
        weight = self.lstm.get_parameter("weight_ih_l0")
        return y.reshape(batch, out).to(weight.device, weight.dtype)

    def _loss(self, x: Tensor, y: Tensor) -> Tensor:
        x = self.as_batch(x)  # (B, T, I)
        return nn.functional.mse_loss(self(x), self._targets(y, x.shape[0]))

    def adam_state(self) -> dict[nn.Parameter, dict[str, Tensor]]:
        """Adam's state of every parameter (step, exp_avg, exp_avg_sq), kept across `train_model`
        calls so that its moments carry on; the compiled loop and `optimizer()` share these tensors."""
        for p in self.parameters():
            if p not in self._adam_state:
                self._adam_state[p] = {
                    "step": torch.tensor(0.0),
                    "exp_avg": torch.zeros_like(p),
                    "exp_avg_sq": torch.zeros_like(p),
                }
        return self._adam_state

    def optimizer(self, lr: float) -> torch.optim.Adam:
        """The model's torch.optim.Adam over `adam_state()`, made on first use (the compiled loop does
        without one: constructing a torch optimizer imports torch._dynamo, about a second)."""
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(self.parameters(), lr=lr)
            for p, state in self.adam_state().items():
                self._optimizer.state[p] = state  # the same tensors, updated in place by both
        for group in self._optimizer.param_groups:
            group["lr"] = lr
        return self._optimizer

    def train_model(
        self,
        batches,
        max_epoch: int = 1000,
        lr: float = 1e-3,
        tol: float | None = 1e-9,
        patience: int = 5000,
        progress: bool | None = None,
    ) -> list[float]:
        """Adam on mean squared error for at most `max_epoch` epochs; returns the loss of every epoch.

        An epoch's loss is the mean of its batch losses (each taken before that batch's step).
        Training stops early under `ConvergenceRule(tol, patience)`; `tol=None` runs every epoch.
        `progress` shows a bar (default: on for 1,000+ epochs when stderr is a terminal).
        """
        if not isinstance(max_epoch, int) or max_epoch < 1:
            raise ValueError(f"max_epoch: expected a positive int, got {max_epoch!r}")
        if not lr > 0:
            raise ValueError(f"lr: expected a positive number, got {lr!r}")
        if progress is None:
            progress = max_epoch >= 1000 and sys.stderr.isatty()
        fixed_order = not isinstance(batches, DataLoader) or isinstance(
            batches.sampler, SequentialSampler
        )
        epochs = _FixedBatches(batches) if fixed_order else batches
        self.train()
        rule = ConvergenceRule(tol, patience)
        bar = tqdm(total=max_epoch, disable=not progress, desc="train", unit="epoch")
        if fixed_order and self._can_fit_natively():
            losses = self._fit_native(epochs.batches, lr, max_epoch, tol, patience)
            bar.update(len(losses))
        else:
            optimizer = self.optimizer(lr)
            losses = []
            for _ in range(max_epoch):
                batch_losses = []
                for x, y in epochs:
                    optimizer.zero_grad()
                    loss = self._loss(x, y)
                    loss.backward()
                    optimizer.step()
                    batch_losses.append(loss.item())
                losses.append(sum(batch_losses) / len(batch_losses))
                bar.update()
                if len(losses) % 100 == 0:
                    bar.set_postfix(loss=f"{losses[-1]:.3g}")
                if rule.converged(losses[-1]):
                    break
        bar.set_postfix(loss=f"{losses[-1]:.3g}")
        bar.close()
        return losses

    def _can_fit_natively(self) -> bool:
        on_cpu = self.lstm.get_parameter("weight_ih_l0").device.type == "cpu"
        return on_cpu and hasattr(native.compiled(), "fit_adam")

    def _fit_native(self, batches, lr, max_epoch, tol, patience) -> list[float]:
        """The same loop as the Python one, compiled: see `nn/csrc/` and its equality tests."""
        params = list(self.parameters())
        states = self.adam_state()
        group: dict[str, Any] = (
            self._optimizer.param_groups[0] if self._optimizer else ADAM_DEFAULTS
        )
        compiled = native.compiled()
        assert compiled is not None, "_can_fit_natively() was checked first"
        xs = [self.as_batch(x).contiguous() for x, _ in batches]
        ys = [
            self._targets(y, x.shape[0]).contiguous() for x, (_, y) in zip(xs, batches, strict=True)
        ]
        step = int(states[params[0]]["step"])
        with torch.no_grad():
            losses, step = compiled.fit_adam(
                xs,
                ys,
                [p.data for p in params],
                [states[p]["exp_avg"] for p in params],
                [states[p]["exp_avg_sq"] for p in params],
                step,
                lr,
                group["betas"][0],
                group["betas"][1],
                group["eps"],
                max_epoch,
                -1.0 if tol is None else tol,
                patience,
            )
        for p in params:
            states[p]["step"].fill_(step)
        return losses.tolist()


class _FixedBatches:
    """A batch iterable read once and replayed every epoch (its order never changes)."""

    def __init__(self, batches) -> None:
        self.batches = [(x, y) for x, y in batches]
        if not self.batches:
            raise ValueError("expected at least one (inputs, targets) batch, got none")

    def __iter__(self):
        return iter(self.batches)
