"""`LSTM` and `LSTMCell`: drop-ins for torch.nn.LSTM / nn.LSTMCell, built from our own gates.

Same constructor arguments, same parameter names and shapes (so `state_dict`s move both ways), same
forward contract (batch-first, unbatched and packed input, optional initial state, projections,
bidirectional stacks, dropout between layers) and the same numbers. Each layer direction runs
`bptt.lstm_sequence` (hand-derived backward, compiled on CPU when built); `LSTM.trace` runs the
readable loop in `sequence.py` and returns every gate value, which nn.LSTM cannot show.

    output, (h_n, c_n) = LSTM(I, H, num_layers=L, bidirectional=...)(x, (h_0, c_0))

    x        (L_seq, N, I), or (N, L_seq, I) with batch_first, or (L_seq, I) unbatched, or PackedSequence
    h_0, h_n (D * num_layers, N, P)     D = 2 if bidirectional else 1, P = proj_size or H
    c_0, c_n (D * num_layers, N, H)
    output   (L_seq, N, D * P), batch-first and unbatched like x, or a PackedSequence
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from lstmbyhand.nn import bptt
from lstmbyhand.nn.gates import lstm_cell
from lstmbyhand.nn.sequence import GateTrace, reference_sequence

BACKENDS = ("bptt", "reference")  # hand-derived backward (default) | readable loop + autograd


def _check_size(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")


def _uniform_init(module: nn.Module, hidden_size: int) -> None:
    """PyTorch's RNN init: every parameter ~ U(-1/√H, 1/√H)."""
    bound = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0
    for weight in module.parameters():
        nn.init.uniform_(weight, -bound, bound)


class LSTM(nn.Module):
    """A multi-layer LSTM with torch.nn.LSTM's arguments, parameters and results.

    Every layer l and direction (suffix "" or "_reverse") holds
    `weight_ih_l{l}` (4H, I or D*P), `weight_hh_l{l}` (4H, P), `bias_ih_l{l}`, `bias_hh_l{l}` (4H,),
    and with proj_size > 0 `weight_hr_l{l}` (P, H); the four gates are stacked i, f, g, o.

    Set `backend` to "reference" to run the readable loop with autograd instead of the hand BPTT.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check_size("input_size", input_size, 0)
        _check_size("hidden_size", hidden_size, 1)
        _check_size("num_layers", num_layers, 1)
        _check_size("proj_size", proj_size, 0)
        if proj_size >= hidden_size:
            raise ValueError(
                f"proj_size has to be smaller than hidden_size, got {proj_size} >= {hidden_size}"
            )
        is_number = isinstance(dropout, numbers.Number) and not isinstance(dropout, bool)
        if not is_number or not 0 <= dropout <= 1:
            raise ValueError(f"dropout: expected a number in [0, 1], got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                f"dropout acts between layers: with num_layers=1 the dropout={dropout} has no effect",
                stacklevel=2,
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        self.backend = "bptt"

        factory = {"device": device, "dtype": dtype}
        H, P, D = hidden_size, proj_size or hidden_size, self.num_directions
        self._flat_weights_names: list[str] = []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else D * P
            for direction in range(D):
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                shapes = {"weight_ih": (4 * H, layer_input), "weight_hh": (4 * H, P)}
                if bias:
                    shapes |= {"bias_ih": (4 * H,), "bias_hh": (4 * H,)}
                if proj_size > 0:
                    shapes["weight_hr"] = (P, H)
                for name, shape in shapes.items():
                    self.register_parameter(
                        name + suffix, nn.Parameter(torch.empty(shape, **factory))
                    )
                    self._flat_weights_names.append(name + suffix)
        self.reset_parameters()

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def reset_parameters(self) -> None:
        _uniform_init(self, self.hidden_size)

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        defaults = {"num_layers": 1, "bias": True, "batch_first": False, "dropout": 0.0}
        defaults |= {"bidirectional": False, "proj_size": 0}
        for name, default in defaults.items():
            if getattr(self, name) != default:
                text += f", {name}={getattr(self, name)}"
        return text

    def direction_weights(self, layer: int, direction: int) -> dict[str, Tensor | None]:
        """The parameters of one layer direction, by role (bias and projection may be None)."""
        suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
        return {name: getattr(self, name + suffix, None) for name in names}

    # -- conversion -------------------------------------------------------------------------------

    def _config(self) -> dict:
        keys = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout")
        return {k: getattr(self, k) for k in (*keys, "bidirectional", "proj_size")}

    @classmethod
    def from_torch(cls, module: nn.LSTM) -> LSTM:
        """An lstmbyhand.LSTM with the same configuration and a copy of `module`'s weights."""
        if not isinstance(module, nn.LSTM):
            raise TypeError(f"expected a torch.nn.LSTM, got {type(module).__name__}")
        weight = module.weight_ih_l0
        ours = cls(**LSTM._config(module), device=weight.device, dtype=weight.dtype)
        ours.load_state_dict(module.state_dict())
        return ours

    def to_torch(self) -> nn.LSTM:
        """A torch.nn.LSTM with the same configuration and a copy of these weights."""
        weight = self.weight_ih_l0
        theirs = nn.LSTM(**self._config(), device=weight.device, dtype=weight.dtype)
        theirs.load_state_dict(self.state_dict())
        return theirs

    # -- forward ----------------------------------------------------------------------------------

    def forward(
        self, input: Tensor | PackedSequence, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor | PackedSequence, tuple[Tensor, Tensor]]:
        output, state, _ = self._run(input, hx, record=False)
        return output, state

    def trace(
        self, input: Tensor | PackedSequence, hx: tuple[Tensor, Tensor] | None = None
    ) -> list[list[GateTrace]]:
        """Every gate value, for every layer and direction: `trace(x)[layer][direction]`.

        Each GateTrace holds input_gate, forget_gate, candidate, output_gate and cell (T, B, H) and
        hidden (T, B, P), time-major and in the input's batch order (B = 1 for unbatched input).
        For packed input, steps past a sequence's length hold zeros. Runs without gradients.
        """
        with torch.no_grad():
            return self._run(input, hx, record=True)[2]

    def _run(self, input, hx, record: bool):
        packed = isinstance(input, PackedSequence)
        if packed:
            x, batch_sizes, sorted_idx, unsorted_idx, scatter = _unpack(input)  # x (T, B, I)
            batched = True
        else:
            if not isinstance(input, Tensor):
                raise TypeError(
                    f"LSTM: expected input to be a Tensor or PackedSequence, got {type(input).__name__}"
                )
            if input.dim() not in (2, 3):
                raise ValueError(f"LSTM: expected input to be 2D or 3D, got {input.dim()}D instead")
            batched = input.dim() == 3
            x = input if batched else input.unsqueeze(1)
            if batched and self.batch_first:
                x = x.transpose(0, 1)
            batch_sizes = sorted_idx = unsorted_idx = None
        self._check_input(x)
        T, B, _ = x.shape
        h0, c0 = self._initial_state(hx, B, batched, x)  # (L*D, B, P), (L*D, B, H)
        if sorted_idx is not None:
            h0, c0 = h0.index_select(1, sorted_idx), c0.index_select(1, sorted_idx)

        if self.backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, got {self.backend!r}")
        run = bptt.lstm_sequence if self.backend == "bptt" and not record else reference_sequence
        h_n, c_n, traces = [], [], []
        layer_input = x  # (T, B, I) then (T, B, D*P)
        for layer in range(self.num_layers):
            outputs, layer_traces = [], []
            for direction in range(self.num_directions):
                k = layer * self.num_directions + direction
                w = self.direction_weights(layer, direction)
                kwargs = {"batch_sizes": batch_sizes, "reverse": direction == 1}
                if record:
                    kwargs["record"] = True
                out, h, c, *trace = run(layer_input, h0[k], c0[k], *w.values(), **kwargs)
                outputs.append(out)  # (T, B, P)
                h_n.append(h)
                c_n.append(c)
                if record:
                    layer_traces.append(
                        trace[0] if unsorted_idx is None else trace[0].select_batch(unsorted_idx)
                    )
            layer_input = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, training=True)
            traces.append(layer_traces)
        output = layer_input  # (T, B, D*P)
        h_n, c_n = torch.stack(h_n), torch.stack(c_n)  # (L*D, B, P), (L*D, B, H)

        if packed:
            output = PackedSequence(
                output.reshape(T * B, -1)[scatter], input.batch_sizes, sorted_idx, unsorted_idx
            )
            if unsorted_idx is not None:
                h_n, c_n = h_n.index_select(1, unsorted_idx), c_n.index_select(1, unsorted_idx)
        elif not batched:
            output, h_n, c_n = output.squeeze(1), h_n.squeeze(1), c_n.squeeze(1)
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, (h_n, c_n), traces

    def _check_input(self, x: Tensor) -> None:
        if x.shape[0] == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in LSTM, got 0 steps")
        if x.shape[-1] != self.input_size:
            raise RuntimeError(
                f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got {x.shape[-1]}"
            )
        if x.dtype != self.weight_ih_l0.dtype:
            raise RuntimeError(
                f"input must have the type {self.weight_ih_l0.dtype}, got type {x.dtype}"
            )

    def _initial_state(self, hx, B: int, batched: bool, x: Tensor) -> tuple[Tensor, Tensor]:
        LD, H, P = (
            self.num_layers * self.num_directions,
            self.hidden_size,
            self.proj_size or self.hidden_size,
        )
        if hx is None:
            return x.new_zeros(LD, B, P), x.new_zeros(LD, B, H)
        if (
            not isinstance(hx, (tuple, list))
            or len(hx) != 2
            or not all(isinstance(t, Tensor) for t in hx)
        ):
            raise TypeError(
                f"hx: expected a tuple (h_0, c_0) of two tensors, got {type(hx).__name__}"
            )
        h0, c0 = hx
        rank = 3 if batched else 2
        if h0.dim() != rank or c0.dim() != rank:
            kind = "batched 3-D" if batched else "unbatched 2-D"
            raise RuntimeError(
                f"For {kind} input, hx and cx should also be {rank}-D but got ({h0.dim()}-D, {c0.dim()}-D) tensors"
            )
        if not batched:
            h0, c0 = h0.unsqueeze(1), c0.unsqueeze(1)
        for name, state, expected in (("hidden[0]", h0, (LD, B, P)), ("hidden[1]", c0, (LD, B, H))):
            if tuple(state.shape) != expected:
                raise RuntimeError(f"Expected {name} size {expected}, got {tuple(state.shape)}")
            if state.dtype != x.dtype:
                raise RuntimeError(f"Expected {name} dtype {x.dtype}, got {state.dtype}")
        return h0, c0


def _unpack(packed: PackedSequence) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None, Tensor]:
    """PackedSequence -> padded (T, B, I) in the packed (length-sorted) batch order.

    Also returns batch_sizes, the sort permutations, and `scatter`, the rows of the flattened
    (T*B, I) padded tensor that the packed rows occupy (packed data is time-major, batch within).
    """
    data, batch_sizes = packed.data, packed.batch_sizes  # (sum of lengths, I), (T,)
    T, B = len(batch_sizes), int(batch_sizes[0])
    running = torch.arange(B)[None, :] < batch_sizes[:, None]  # (T, B)
    scatter = running.flatten().nonzero().squeeze(1).to(data.device)  # (sum of lengths,)
    padded = data.new_zeros(T * B, data.shape[1]).index_copy(0, scatter, data)
    return (
        padded.view(T, B, -1),
        batch_sizes,
        packed.sorted_indices,
        packed.unsorted_indices,
        scatter,
    )


class LSTMCell(nn.Module):
    """One LSTM step with torch.nn.LSTMCell's arguments and parameters: `gates.lstm_cell`.

    input (N, I) or (I,); hx = (h, c) each (N, H) or (H,), zeros if omitted -> (h', c').
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check_size("input_size", input_size, 0)
        _check_size("hidden_size", hidden_size, 1)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        factory = {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size, **factory))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size, **factory)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size, **factory)) if bias else None
        _uniform_init(self, hidden_size)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")

    def forward(
        self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        if not isinstance(input, Tensor):
            raise TypeError(f"LSTMCell: expected input to be a Tensor, got {type(input).__name__}")
        if input.dim() not in (1, 2):
            raise ValueError(f"LSTMCell: expected input to be 1D or 2D, got {input.dim()}D instead")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(
                f"input has inconsistent input_size: got {input.shape[-1]} expected {self.input_size}"
            )
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)  # (N, I)
        if hx is None:
            h = c = x.new_zeros(x.shape[0], self.hidden_size)
        else:
            h, c = (s if batched else s.unsqueeze(0) for s in hx)
            expected = (x.shape[0], self.hidden_size)
            for name, state in (("hx", h), ("cx", c)):
                if tuple(state.shape) != expected:
                    raise RuntimeError(
                        f"{name}: expected shape {expected}, got {tuple(state.shape)}"
                    )
        h, c, _ = lstm_cell(x, h, c, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))
