"""The forecaster: our LSTM over a window of scaled values, a linear head, plus a statistical base.

    x' (B, W) -> LSTM -> h_W (B, H_hid), the last step of the top layer -> Linear -> r' (B, O)
    y' = b' + r'            b' (B, O): the base forecast, scaled like the window (`--base`)

O (`ModelConfig.outputs`) is 1 with `--multistep recursive` (the default: `evaluate.predict`
feeds each forecast back in, as new data, until the horizon is reached) and the horizon with
`direct` (all H forecasts at once).

The network learns the residual of a statistical forecast (the median of AutoETS, AutoARIMA and
AutoTheta by default, see `baselines.py`; Smyl's ES-RNN joined exponential smoothing and an LSTM
the same way). The head starts at zero, so the untrained model IS the base forecast; early
stopping keeps it (epoch 0) unless an epoch beats it on the validation part, and `select` keeps
the trained network only if it beats the base there by more than chance. With `--base none`
there is no b' and the untrained model is the scaling's own baseline: the last value for `last`,
the window's mean for `window`, the train mean for `global`.

The inputs are one tensor, the window's W scaled values followed by the base's O scaled forecasts:
x (B, W + O), or x (B, W) without a base. Built from `ModelConfig`, which is saved in every run's
config.json.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lstmbyhand.forecast.config import ModelConfig
from lstmbyhand.nn import LSTM

KEEP_T = 1.645  # one-sided 5 % of the normal: the Diebold-Mariano statistic the network must pass


class Forecaster(nn.Module):
    """LSTM(1 -> hidden, layers, dropout between layers) + Linear(hidden -> outputs) [+ base]."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        dropout = config.dropout if config.layers > 1 else 0.0
        self.lstm = LSTM(
            1, config.hidden, num_layers=config.layers, dropout=dropout, batch_first=True
        )
        self.head = nn.Linear(config.hidden, config.outputs)
        nn.init.zeros_(self.head.weight)  # start as the baseline: r' = 0
        nn.init.zeros_(self.head.bias)

    @property
    def inputs(self) -> int:
        """Values per input row: W, plus O base forecasts when there is a base."""
        c = self.config
        return c.window + (c.outputs if c.base != "none" else 0)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, W [+ O]): scaled window [and base] -> y' (B, O) scaled forecasts."""
        if x.dim() != 2 or x.shape[1] != self.inputs:
            raise ValueError(
                f"expected inputs of shape (batch, {self.inputs}), got {tuple(x.shape)}"
            )
        W = self.config.window
        out, _ = self.lstm(x[:, :W].unsqueeze(-1))  # (B, W, hidden)
        residual = self.head(out[:, -1])  # (B, O)
        return residual + x[:, W:] if x.shape[1] > W else residual

    @torch.no_grad()
    def trace(self, x: Tensor):
        """The gate traces of our LSTM for inputs x (B, W [+ O]): [layer][direction] -> GateTrace."""
        return self.lstm.trace(x[:, : self.config.window].unsqueeze(-1))


@torch.no_grad()
def diebold_mariano(model: Forecaster, x: Tensor, y: Tensor) -> float:
    """How clearly the network beats its base on windows x (K, W + O), y (K, O), squared errors:

        d_k = mean_o (b'_ko - y'_ko)² - mean_o (ŷ'_ko - y'_ko)²        t = mean(d) / (std(d) / √K)

    (t > 0: the network is better; about normal under "no better" for many windows)."""
    model.eval()
    W = model.config.window
    d = ((x[:, W:] - y) ** 2).mean(1) - ((model(x) - y) ** 2).mean(1)  # (K,)
    d = d.double()
    if len(d) < 2 or float(d.std()) == 0.0:
        return math.copysign(math.inf, float(d.sum())) if float(d.sum()) else 0.0
    return float(d.mean() / (d.std() / math.sqrt(len(d))))


def select(config: ModelConfig, best: dict[str, Tensor], x: Tensor, y: Tensor) -> dict[str, Tensor]:
    """The trained weights `best`, or, unless they beat the base on the validation windows x, y by
    t > KEEP_T (`diebold_mariano`), the same weights with the head zeroed: the base forecast."""
    if config.base == "none":
        return best
    probe = Forecaster(config)
    probe.load_state_dict(best)
    if diebold_mariano(probe, x, y) > KEEP_T:
        return best
    return {k: torch.zeros_like(v) if k.startswith("head.") else v for k, v in best.items()}
