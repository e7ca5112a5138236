"""The readable LSTM over a sequence: `gates.lstm_cell` looped over time, autograd for gradients.

This is the specification of one layer direction. The fast paths in `bptt.py` (hand-derived backward
in PyTorch ops, and its compiled twin in `csrc/`) must compute the same function; the tests hold
them to it. It is also what `LSTM.trace` runs, so that every gate value can be recorded.

Variable lengths follow PackedSequence's layout: the batch is sorted by length (longest first), and
at step t only the first `batch_sizes[t]` rows are still running. Rows that have ended (forward) or
not yet begun (reverse) keep their state unchanged; their outputs are zero.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lstmbyhand.nn.gates import lstm_cell
from lstmbyhand.nn.variants import Masks, Variant, VariantWeights, cell_forward


@dataclass
class GateTrace:
    """Every value one layer direction computed, each (T, B, H) (hidden: (T, B, P)), time-major.

    Steps a row did not run (past its length in a packed batch) hold zeros.
    """

    input_gate: Tensor
    forget_gate: Tensor
    candidate: Tensor
    output_gate: Tensor
    cell: Tensor
    hidden: Tensor

    def select_batch(self, index: Tensor) -> GateTrace:
        """The same trace with its batch rows reordered (or picked) by `index`."""
        return GateTrace(**{k: v.index_select(1, index) for k, v in vars(self).items()})


def time_steps(T: int, reverse: bool) -> range:
    """The order in which a direction visits the steps."""
    return range(T - 1, -1, -1) if reverse else range(T)


def active_rows(batch_sizes: Tensor | None, t: int, B: int) -> int:
    """How many leading rows of the (sorted) batch are running at step t."""
    return B if batch_sizes is None else int(batch_sizes[t])


Step = Callable[[int, int, Tensor, Tensor], tuple[Tensor, Tensor, Sequence[Tensor]]]


def run_steps(
    x: Tensor, h0: Tensor, c0: Tensor, step: Step, batch_sizes: Tensor | None, reverse: bool,
    record: bool,
) -> tuple[Tensor, Tensor, Tensor, GateTrace | None]:  # fmt: skip
    """The loop over time of one direction: `step(t, n, h, c)` advances the first n rows of
    h (B, P), c (B, H) by one step and returns h_t (n, P), c_t (n, H) and the gates i, f, g, o."""
    T, B, _ = x.shape
    H, P = c0.shape[1], h0.shape[1]
    h, c = h0, c0
    outputs = [x.new_zeros(B, P) for _ in range(T)]
    names = ("input_gate", "forget_gate", "candidate", "output_gate", "cell")
    trace = {name: [x.new_zeros(B, H) for _ in range(T)] for name in names} if record else None
    for t in time_steps(T, reverse):
        n = active_rows(batch_sizes, t, B)
        h_n, c_n, gates = step(t, n, h, c)  # (n, P), (n, H)
        h = torch.cat([h_n, h[n:]]) if n < B else h_n  # (B, P)
        c = torch.cat([c_n, c[n:]]) if n < B else c_n  # (B, H)
        outputs[t] = torch.cat([h_n, x.new_zeros(B - n, P)]) if n < B else h_n
        if trace is not None:
            for name, value in zip(names, (*gates, c_n), strict=True):
                trace[name][t] = torch.cat([value, x.new_zeros(B - n, H)]) if n < B else value
    output = torch.stack(outputs)  # (T, B, P)
    if trace is None:
        return output, h, c, None
    stacked = {name: torch.stack(steps) for name, steps in trace.items()}  # each (T, B, H)
    return output, h, c, GateTrace(hidden=output, **stacked)


def reference_sequence(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
    weight_hr: Tensor | None = None,
    batch_sizes: Tensor | None = None,
    reverse: bool = False,
    record: bool = False,
) -> tuple[Tensor, Tensor, Tensor, GateTrace | None]:
    """Run one direction of one layer step by step.

    x (T, B, I), h0 (B, P), c0 (B, H) -> output (T, B, P), h_n (B, P), c_n (B, H), and with
    `record=True` a GateTrace of every step.
    """

    def step(t: int, n: int, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Sequence[Tensor]]:
        return lstm_cell(x[t, :n], h[:n], c[:n], weight_ih, weight_hh, bias_ih, bias_hh, weight_hr)

    return run_steps(x, h0, c0, step, batch_sizes, reverse, record)


def variant_sequence(
    x: Tensor, h0: Tensor, c0: Tensor, weights: VariantWeights, variant: Variant, masks: Masks,
    batch_sizes: Tensor | None = None, reverse: bool = False, record: bool = False,
) -> tuple[Tensor, Tensor, Tensor, GateTrace | None]:  # fmt: skip
    """`reference_sequence` for a variant of the cell (`variants.cell_forward` at each step, with
    the masks' rows of that step); the trace holds the gates as the variant used them."""
    m, zeta_c, zeta_h = masks

    def step(t: int, n: int, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Sequence[Tensor]]:
        a_x = x[t, :n] @ weights.weight_ih.T  # (n, 4H) F1
        h_t, c_t, saved = cell_forward(
            variant, weights, a_x, h[:n], c[:n],
            None if m is None else m[:n],
            None if zeta_c is None else zeta_c[t, :n],
            None if zeta_h is None else zeta_h[t, :n],
        )  # fmt: skip
        return h_t, c_t, saved.gates.chunk(4, dim=1)

    return run_steps(x, h0, c0, step, batch_sizes, reverse, record)
