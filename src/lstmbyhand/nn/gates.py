"""One LSTM step, every gate named: the specification for everything else in lstmbyhand.

For an input x (B, I), hidden state h (B, P) and cell state c (B, H):

    i  = σ(W_i x + U_i h + b_i)        input gate: how much of the candidate to write
    f  = σ(W_f x + U_f h + b_f)        forget gate: how much of the old cell to keep
    g  = tanh(W_g x + U_g h + b_g)     candidate ("state" gate in the seed): what to write
    o  = σ(W_o x + U_o h + b_o)        output gate: how much of the cell to show
    c' = f ⊙ c + i ⊙ g                 new cell state
    r  = o ⊙ tanh(c')                  new hidden state before projection
    h' = r            (proj_size = 0)
    h' = W_hr r       (proj_size = P > 0)

The weights are stored as torch.nn.LSTM stores them, the four gates stacked in the order i, f, g, o:
`weight_ih` (4H, I) = [W_i; W_f; W_g; W_o], `weight_hh` (4H, P) = [U_i; U_f; U_g; U_o], and the biases
`bias_ih`, `bias_hh` (4H,), whose sum is b. `gate_views` names those blocks for reading and teaching.
P = H unless a projection is used.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

GATE_NAMES = (
    "input",
    "forget",
    "candidate",
    "output",
)  # torch.nn.LSTM's stacking order: i, f, g, o


class DirectionWeights(NamedTuple):
    """The parameters of one layer direction, by role: nn.LSTM's names without the `_l{k}` /
    `_l{k}_reverse` suffix. The field order is the order of the weight parameters of `lstm_cell`,
    `sequence.reference_sequence` and `ops.lstm_sequence` (a test holds them to it), so a record
    unpacks into any of them: `reference_sequence(x, h0, c0, *weights)`."""

    weight_ih: Tensor  # (4H, I)   [W_i; W_f; W_g; W_o]
    weight_hh: Tensor  # (4H, P)   [U_i; U_f; U_g; U_o]
    bias_ih: Tensor | None = None  # (4H,)
    bias_hh: Tensor | None = None  # (4H,)
    weight_hr: Tensor | None = None  # (P, H)   with a projection


class Gates(NamedTuple):
    """The four gate activations of one step, each (B, H)."""

    input: Tensor
    forget: Tensor
    candidate: Tensor
    output: Tensor


def gate_views(stacked: Tensor) -> dict[str, Tensor]:
    """Split a stacked (4H, ...) weight or (4H,) bias into its four named gate blocks (views, no copy)."""
    if stacked.shape[0] % 4 != 0:
        raise ValueError(
            f"expected a first dimension divisible by 4 (four gates), got {stacked.shape[0]}"
        )
    return dict(zip(GATE_NAMES, stacked.chunk(4, dim=0), strict=True))


def lstm_cell(
    x: Tensor,
    h: Tensor,
    c: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
    weight_hr: Tensor | None = None,
) -> tuple[Tensor, Tensor, Gates]:
    """One LSTM step, written gate by gate (see the module docstring for the equations).

    x (B, I), h (B, P), c (B, H) -> h' (B, P), c' (B, H), Gates of (B, H) each.
    """
    W = gate_views(weight_ih)  # each (H, I)
    U = gate_views(weight_hh)  # each (H, P)
    b: dict[str, Tensor | float] = {name: 0.0 for name in GATE_NAMES}
    for bias in (bias_ih, bias_hh):
        if bias is not None:
            b = {name: b[name] + block for name, block in gate_views(bias).items()}  # each (H,)

    def pre(name: str) -> Tensor:
        return x @ W[name].T + h @ U[name].T + b[name]  # (B, H)

    i = torch.sigmoid(pre("input"))
    f = torch.sigmoid(pre("forget"))
    g = torch.tanh(pre("candidate"))
    o = torch.sigmoid(pre("output"))
    c_next = f * c + i * g  # (B, H)
    r = o * torch.tanh(c_next)  # (B, H)
    h_next = r if weight_hr is None else r @ weight_hr.T  # (B, P)
    return h_next, c_next, Gates(i, f, g, o)
