"""ONNX export: each layer direction becomes one node of ONNX's own `LSTM` operator.

A plain `torch.onnx.export(model, (x,), f)` (torch's default exporter, built on torch.export) needs
nothing more: while it traces, `ops.lstm_sequence` calls `lstm_node`, which puts an ONNX `LSTM` node
into the graph through `torch.onnx.ops.symbolic_multi_out` (torch's public way to emit an ONNX
operator from a model), so no translation table, onnxscript function or registration is involved,
and every ONNX runtime runs the layer with its own LSTM kernel. ONNX stacks the gates i, o, f, c
where nn.LSTM (and `gates.py`) stacks i, f, g, o; one direction of one layer is

    W [1, 4H, I] = weight_ih's blocks as [W_i; W_o; W_f; W_g]     R [1, 4H, H] = weight_hh's, alike
    B [1, 8H]    = [b_ih; b_hh], each reordered alike (omitted without bias: ONNX's zeros)
    X (T, B, I), initial_h (1, B, H), initial_c (1, B, H)
        -> Y (T, 1, B, H), Y_h (1, B, H), Y_c (1, B, H)          direction "forward" or "reverse"

Sequence length and batch may be dynamic (`dynamic_shapes`); dropout between layers is off in eval
mode, as in nn.LSTM. Refused, with the reason: a projection (proj_size > 0; ONNX's LSTM has
none, and its recurrence runs on the unprojected h: the loop unrolled over the steps exported in
94 s for a 2-layer model of 5 steps and fixed the length, a `Scan` took 258 s and fixed the batch),
packed sequences, and the TorchScript exporter (`dynamo=False`).
"""

from __future__ import annotations

import torch
from torch import Tensor

ONNX_GATE_ORDER = (0, 3, 1, 2)  # ONNX's i, o, f, c as blocks of our i, f, g, o
ONNX_LSTM_OPSET = 14  # the LSTM's latest version (layout attribute)


@torch.compiler.assume_constant_result
def exporting() -> bool:
    """Whether torch.onnx.export is tracing the model. Run as Python even inside Dynamo, which
    takes `torch.onnx.is_in_onnx_export()` for False: the exporter's strict fallback (torch.export
    with strict=True, tried when the non-strict capture fails) then emits the same nodes, and
    refusals raise under both captures, so the user sees ours, not a missing-translation error."""
    return torch.onnx.is_in_onnx_export()


def _onnx_gates(t: Tensor, H: int) -> Tensor:
    """Our stacked gate blocks (4H, ...) in ONNX's order (narrow + cat: folds into a constant)."""
    return torch.cat([t.narrow(0, k * H, H) for k in ONNX_GATE_ORDER])


def _check_exportable(weight_hr: Tensor | None, batch_sizes: Tensor | None) -> None:
    """Raise for what ONNX's LSTM cannot express (raised under both of the exporter's captures)."""
    if torch.jit.is_tracing():
        raise RuntimeError(
            "ONNX export of lstmbyhand.LSTM: expected torch.onnx.export's default exporter "
            "(dynamo=True), got the TorchScript-based one (dynamo=False)"
        )
    if weight_hr is not None:
        raise RuntimeError(
            "ONNX export of lstmbyhand.LSTM: expected proj_size=0, got a projection "
            "(ONNX's LSTM operator has none)"
        )
    if batch_sizes is not None:
        raise RuntimeError(
            "ONNX export of lstmbyhand.LSTM: expected a padded input tensor, got a PackedSequence"
        )


def refuse_variant(variant: object) -> None:
    """Raise for a cell variant (nn/variants.py) under torch.onnx.export: ONNX's LSTM operator has
    peepholes but neither coupled gates, layer norm, zoneout nor ablations, and no translation is
    registered for the variant operators (so the exporter would fail with a missing function)."""
    raise RuntimeError(
        "ONNX export of lstmbyhand.LSTM: expected the plain cell (forget_bias allowed), got the "
        f"cell variant {variant} (ONNX's LSTM operator cannot express it)"
    )


def lstm_node(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None,
    bias_hh: Tensor | None,
    weight_hr: Tensor | None,
    batch_sizes: Tensor | None,
    reverse: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """One layer direction during torch.onnx.export: x (T, B, I), h0 (B, P), c0 (B, H) ->
    output (T, B, H), h_n (B, H), c_n (B, H), as one ONNX `LSTM` node."""
    _check_exportable(weight_hr, batch_sizes)
    T, B, _ = x.shape
    H = c0.shape[1]
    W = _onnx_gates(weight_ih, H).unsqueeze(0)  # (1, 4H, I)
    R = _onnx_gates(weight_hh, H).unsqueeze(0)  # (1, 4H, H)
    biases = None
    if bias_ih is not None and bias_hh is not None:
        biases = torch.cat([_onnx_gates(bias_ih, H), _onnx_gates(bias_hh, H)]).unsqueeze(
            0
        )  # (1, 8H)
    y, y_h, y_c = torch.onnx.ops.symbolic_multi_out(
        "LSTM",
        [x, W, R, biases, None, h0.unsqueeze(0), c0.unsqueeze(0)],
        {"hidden_size": H, "direction": "reverse" if reverse else "forward"},
        dtypes=[x.dtype] * 3,
        shapes=[(T, 1, B, H), (1, B, H), (1, B, H)],
        version=ONNX_LSTM_OPSET,
    )
    return y.squeeze(1), y_h.squeeze(0), y_c.squeeze(0)  # (T, B, H), (B, H), (B, H)
