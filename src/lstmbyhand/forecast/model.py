"""The forecaster: our LSTM over a window of scaled values, then a linear head for the horizon.

    x' (B, W) -> LSTM -> h_W (B, H_hid), the last step of the top layer -> Linear -> y' (B, horizon)

The head starts at zero, so the untrained model outputs y' = 0: with `last` scaling that is exactly
the naive forecast (the last value), with `window` the window's mean, with `global` the train mean.
Training starts from that baseline, and early stopping keeps it (epoch 0) unless an epoch beats it
on the validation part. All H forecasts come out at once (direct multi-output); `forecast.py` feeds them back in for more
steps than the horizon. Built from `ModelConfig`, which is saved in every run's config.json.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lstmbyhand.forecast.config import ModelConfig
from lstmbyhand.nn import LSTM


class Forecaster(nn.Module):
    """LSTM(1 -> hidden, layers, dropout between layers) + Linear(hidden -> horizon)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        dropout = config.dropout if config.layers > 1 else 0.0
        self.lstm = LSTM(
            1, config.hidden, num_layers=config.layers, dropout=dropout, batch_first=True
        )
        self.head = nn.Linear(config.hidden, config.horizon)
        nn.init.zeros_(self.head.weight)  # start as the scaling's baseline: y' = 0
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor) -> Tensor:
        """x' (B, W) scaled inputs -> y' (B, horizon) scaled forecasts."""
        if x.dim() != 2 or x.shape[1] != self.config.window:
            raise ValueError(
                f"expected inputs of shape (batch, {self.config.window}), got {tuple(x.shape)}"
            )
        out, _ = self.lstm(x.unsqueeze(-1))  # (B, W, hidden)
        return self.head(out[:, -1])  # (B, horizon)

    @torch.no_grad()
    def trace(self, x: Tensor):
        """The gate traces of our LSTM for inputs x' (B, W): [layer][direction] -> GateTrace."""
        return self.lstm.trace(x.unsqueeze(-1))
