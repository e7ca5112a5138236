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

The inputs are one tensor, the window's W scaled values, then F covariates per step of the window
(features.py; none without covariates), then the base's O scaled forecasts: x (B, W + W·F + O),
or without a base x (B, W + W·F). The LSTM reads [y'_s, covariates_s] at each step s.

With quantile levels q_1 < ... < q_Q (`--quantiles`, 0.5 among them) the head gives Q outputs per
step, each the base plus its own residual: y' (B, O, Q), trained on the pinball loss (train.py);
the 0.5 quantile is the point forecast. The LSTM's cell is plain or a variant (`--cell`,
`--ablate`, `--forget-bias`, `--recurrent-dropout`, `--zoneout`: docs/variants.md). Built from
`ModelConfig`, which is saved in every run's config.json.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from lstmbyhand.errors import UserError
from lstmbyhand.forecast.config import ModelConfig
from lstmbyhand.nn import LSTM
from lstmbyhand.nn.variants import CellOptions

KEEP_T = 1.645  # one-sided 5 % of the normal: the Diebold-Mariano statistic the network must pass


class Forecaster(nn.Module):
    """LSTM(1 + F -> hidden, layers, dropout between layers) + Linear(hidden -> O·Q) [+ base]."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        dropout = config.dropout if config.layers > 1 else 0.0
        self.lstm = LSTM(
            1 + config.features,
            config.hidden,
            num_layers=config.layers,
            dropout=dropout,
            batch_first=True,
            **cell_options(config),
        )
        self.head = nn.Linear(config.hidden, config.outputs * config.levels)
        nn.init.zeros_(self.head.weight)  # start as the baseline: r' = 0
        nn.init.zeros_(self.head.bias)

    @property
    def inputs(self) -> int:
        """Values per input row: W, W·F covariates, plus O base forecasts when there is a base."""
        c = self.config
        return c.window * (1 + c.features) + (c.outputs if c.base != "none" else 0)

    def sequence(self, x: Tensor) -> Tensor:
        """The LSTM's input steps (B, W, 1 + F) from input rows x (B, W + W·F [+ O])."""
        W, F = self.config.window, self.config.features
        steps = x[:, :W].unsqueeze(-1)  # (B, W, 1)
        if not F:
            return steps
        return torch.cat([steps, x[:, W : W + W * F].reshape(len(x), W, F)], dim=2)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, W + W·F [+ O]) -> y' (B, O) scaled forecasts, or (B, O, Q) with quantiles."""
        if x.dim() != 2 or x.shape[1] != self.inputs:
            raise ValueError(
                f"expected inputs of shape (batch, {self.inputs}), got {tuple(x.shape)}"
            )
        c = self.config
        out, _ = self.lstm(self.sequence(x))  # (B, W, hidden)
        residual = self.head(out[:, -1])  # (B, O·Q)
        if c.quantiles:
            residual = residual.reshape(len(x), c.outputs, c.levels)  # (B, O, Q)
        if c.base == "none":
            return residual
        base = x[:, self.inputs - c.outputs :]  # (B, O)
        return residual + (base.unsqueeze(-1) if c.quantiles else base)

    @torch.no_grad()
    def trace(self, x: Tensor):
        """The gate traces of our LSTM for inputs x (B, W + W·F [+ O]): [layer][direction] ->
        GateTrace."""
        return self.lstm.trace(self.sequence(x))


def cell_options(config: ModelConfig) -> dict[str, Any]:
    """The LSTM's cell keywords of `config` (peephole=True, ..., ablate=(...)), or a `UserError`
    for values or a combination the LSTM refuses (its own reason, e.g. coupled with no forget
    gate), raised before anything is trained."""
    config.check_cell()
    keywords: dict[str, Any] = {name: True for name in config.cell} | {
        "ablate": tuple(config.ablate),
        "forget_bias": config.forget_bias,
        "recurrent_dropout": config.recurrent_dropout,
        "zoneout": config.zoneout,
    }
    try:
        CellOptions.of(**keywords)
    except (TypeError, ValueError) as err:
        raise UserError(f"this cell cannot be built: {err}") from None
    return keywords


@torch.no_grad()
def diebold_mariano(model: Forecaster, x: Tensor, y: Tensor) -> float:
    """How clearly the network beats its base on windows x (K, ·), y (K, O), squared errors:

        d_k = mean_o (b'_ko - y'_ko)² - mean_o (ŷ'_ko - y'_ko)²        t = mean(d) / (std(d) / √K)

    (t > 0: the network is better; about normal under "no better" for many windows). With
    quantiles ŷ' is the median."""
    model.eval()
    base = x[:, model.inputs - model.config.outputs :]  # (K, O)
    d = ((base - y) ** 2).mean(1) - ((point(model, model(x)) - y) ** 2).mean(1)  # (K,)
    d = d.double()
    if len(d) < 2 or float(d.std()) == 0.0:
        return math.copysign(math.inf, float(d.sum())) if float(d.sum()) else 0.0
    return float(d.mean() / (d.std() / math.sqrt(len(d))))


def point(model: Forecaster, y: Tensor) -> Tensor:
    """The point forecast (B, O) of outputs y: themselves, or their 0.5 quantile."""
    q = model.config.quantiles
    return y[..., q.index(0.5)] if q else y


def select(config: ModelConfig, best: dict[str, Tensor], x: Tensor, y: Tensor) -> dict[str, Tensor]:
    """The trained weights `best`, or, unless they beat the base on the validation windows x, y by
    t > KEEP_T (`diebold_mariano`), the same weights with the head zeroed: the base forecast.
    With quantiles only the median's rows of the head are zeroed: the other quantiles keep their
    learned spread around it."""
    if config.base == "none":
        return best
    probe = Forecaster(config)
    probe.load_state_dict(best)
    if diebold_mariano(probe, x, y) > KEEP_T:
        return best
    return zero_head(config, best)


def zero_head(config: ModelConfig, weights: dict[str, Tensor]) -> dict[str, Tensor]:
    """The base forecast itself: the head's (median) rows zeroed, the rest of `weights` kept."""
    keep = torch.ones(config.outputs, config.levels, dtype=torch.bool)  # (O, Q)
    keep[:, config.quantiles.index(0.5) if config.quantiles else 0] = False
    rows = keep.reshape(-1)  # (O·Q,): the head's output rows, step-major
    out = dict(weights)
    for k in ("head.weight", "head.bias"):
        v = weights[k]
        mask = rows.reshape(-1, *([1] * (v.dim() - 1))).to(v.device)
        out[k] = torch.where(mask, v, torch.zeros_like(v))
    return out
