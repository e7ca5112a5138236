"""`LSTM` and `LSTMCell`: drop-ins for torch.nn.LSTM / nn.LSTMCell, built from our own gates.

Same constructor arguments, same parameter names and shapes (so `state_dict`s move both ways), same
forward contract (batch-first, unbatched and packed input, optional initial state, projections,
bidirectional stacks, dropout between layers) and the same numbers. Each layer direction runs
`ops.lstm_sequence` (hand-derived backward, compiled on CPU when built); `LSTM.trace` runs the
readable loop in `sequence.py` and returns every gate value, which nn.LSTM cannot show. `LSTMCell`
runs `cell_step`: `gates.lstm_cell` with the gates stacked, in as few torch ops as nn.LSTMCell's own
kernel, called from C++ (nn/csrc/cell_step.cpp) where the extension is built, so a cell called step
by step from Python is as fast. Invalid arguments and inputs raise
nn.LSTM's exception types with its texts (tests/nn/test_errors_like_torch.py holds every case).

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
from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence
from torch.overrides import has_torch_function

from lstmbyhand.nn import bptt, native, ops
from lstmbyhand.nn.gates import DirectionWeights
from lstmbyhand.nn.sequence import GateTrace, reference_sequence, variant_sequence
from lstmbyhand.nn.variant_ops import variant_lstm_sequence
from lstmbyhand.nn.variants import CellOptions, VariantWeights, cell_forward

BACKENDS = ("bptt", "reference")  # hand-derived backward (default) | readable loop + autograd


def _check_arguments(
    input_size: int,
    hidden_size: int,
    num_layers: int,
    bias: bool,
    batch_first: bool,
    dropout: float,
    proj_size: int,
) -> None:
    """torch.nn.LSTM's checks of its constructor arguments, in its order, with its types and texts."""
    if (
        not isinstance(dropout, numbers.Number)
        or not 0 <= dropout <= 1
        or isinstance(dropout, bool)
    ):
        raise ValueError(
            "dropout should be a number in range [0, 1] representing the probability of an "
            "element being zeroed"
        )
    if dropout > 0 and num_layers == 1:
        warnings.warn(
            "dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
            f"expects num_layers greater than 1, but got dropout={dropout} and "
            f"num_layers={num_layers}",
            stacklevel=3,
        )
    for name, flag in (("bias", bias), ("batch_first", batch_first)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} should be of type bool, got: {type(flag).__name__}")
    for name, size in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(size, int):
            raise TypeError(f"{name} should be of type int, got: {type(size).__name__}")
        if size <= 0:
            raise ValueError(f"{name} must be greater than zero")
    if num_layers <= 0:
        raise ValueError("num_layers must be greater than zero")
    if proj_size < 0:
        raise ValueError("proj_size should be a positive integer or zero to disable projections")
    if proj_size >= hidden_size:
        raise ValueError("proj_size has to be smaller than hidden_size")


def _uniform_init(module: nn.Module, hidden_size: int) -> None:
    """PyTorch's RNN init: every parameter ~ U(-1/√H, 1/√H)."""
    bound = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0
    for weight in module.parameters():
        nn.init.uniform_(weight, -bound, bound)


_VARIANT_ARGS = """\
        peephole: keyword only. Gers & Schmidhuber's diagonal peepholes: c_{t-1} into i and f,
            c_t into o (`weight_peephole`). Default: ``False``
        coupled: keyword only. CIFG, f = 1 - i (the forget gate's rows of the weights are zero
            and stay so). Default: ``False``
        layer_norm: keyword only. Haste's LayerNormLSTM: LN on W x, on U h (gains
            `ln_weight_ih`, `ln_weight_hh`; b_ih + b_hh their bias) and on c before its tanh
            (`ln_weight_c`, `ln_bias_c`). Default: ``False``
        forget_bias: keyword only. The forget gate's bias at initialization: b_ih's forget block
            is set to it and b_hh's to 0, so b_f = b_ih + b_hh starts at forget_bias (Keras'
            unit_forget_bias is 1.0). Default: 0.0 (nn.LSTM's uniform init)
        recurrent_dropout: keyword only. Gal & Ghahramani: one mask per sequence on h_{t-1} where
            it enters U h, in training only (LSTMCell keeps its mask until it is called without a
            state or `reset_recurrent_dropout()` is called). Default: 0.0
        zoneout: keyword only. p or (p_h, p_c), Krueger et al.: in training each unit keeps its
            previous h (c) with probability p_h (p_c); in evaluation the expectation. Default: 0.0
        ablate: keyword only. Names from ("input_gate", "forget_gate", "output_gate",
            "input_activation", "output_activation"): the Odyssey paper's NIG (i = 1), NFG
            (f = 1), NOG (o = 1), NIAF (g = z_g) and NOAF (h = o ⊙ c). A removed gate's rows of
            the weights and biases are zero and stay so. Default: ``()``

        The variants' equations, parameter names and refused combinations: docs/variants.md and
        `lstmbyhand.nn.variants`. Masks come from torch's RNG, so ``torch.manual_seed`` repeats them.
"""  # the cell-variant keywords in LSTM's and LSTMCell's docstrings (one text)


class LSTM(nn.Module):
    r"""A multi-layer long short-term memory (LSTM) RNN with torch.nn.LSTM's arguments, parameters,
    checks and numbers. For each element of the input sequence each layer computes

    .. math::
        \begin{array}{ll} \\
            i_t = \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi}) \\
            f_t = \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) \\
            g_t = \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\
            o_t = \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho}) \\
            c_t = f_t \odot c_{t-1} + i_t \odot g_t \\
            h_t = o_t \odot \tanh(c_t) \\
        \end{array}

    where :math:`h_t` is the hidden state at time `t`, :math:`c_t` the cell state, :math:`x_t` the
    input, :math:`h_{t-1}` the layer's hidden state at `t-1` (or the initial hidden state at time
    `0`), and :math:`i_t`, :math:`f_t`, :math:`g_t`, :math:`o_t` the input, forget, cell and output
    gates; :math:`\sigma` is the sigmoid function and :math:`\odot` the Hadamard product (each gate
    written out in `gates.lstm_cell`). In a multilayer LSTM the input :math:`x^{(l)}_t` of layer
    :math:`l \ge 2` is the hidden state :math:`h^{(l-1)}_t` of the layer below times dropout
    :math:`\delta^{(l-1)}_t`, each a Bernoulli variable that is `0` with probability `dropout`.
    With ``proj_size > 0`` the hidden state is projected, :math:`h_t = W_{hr} (o_t \odot \tanh(c_t))`,
    and has proj_size features (https://arxiv.org/abs/1402.1128).

    Each layer direction runs the hand-derived BPTT (compiled on the CPU when built);
    ``backend = "reference"`` runs the readable loop with autograd instead, and `trace` returns every
    gate value, which nn.LSTM cannot show.

    Args:
        input_size: The number of expected features in the input `x`
        hidden_size: The number of features in the hidden state `h`
        num_layers: Number of recurrent layers, stacked. Default: 1
        bias: If ``False``, then the layer does not use bias weights `b_ih` and `b_hh`.
            Default: ``True``
        batch_first: If ``True``, the input and output tensors are `(batch, seq, feature)` instead
            of `(seq, batch, feature)` (not the hidden and cell states). Default: ``False``
        dropout: If non-zero, dropout with this probability on the outputs of each layer except
            the last. Default: 0
        bidirectional: If ``True``, a bidirectional LSTM. Default: ``False``
        proj_size: If ``> 0``, an LSTM with projections of this size. Default: 0
        device: where the parameters are created. Default: ``None`` (the default device)
        dtype: the parameters' dtype. Default: ``None`` (the default dtype)
        {variant_args}

    Inputs: input, (h_0, c_0)
        * **input**: tensor of shape :math:`(L, H_{in})` for unbatched input,
          :math:`(L, N, H_{in})` when ``batch_first=False`` or :math:`(N, L, H_{in})` when
          ``batch_first=True``, or a packed variable length sequence
          (:func:`torch.nn.utils.rnn.pack_padded_sequence`).
        * **h_0**: tensor of shape :math:`(D * \text{num\_layers}, H_{out})` for unbatched input or
          :math:`(D * \text{num\_layers}, N, H_{out})`: the initial hidden state. Defaults to
          zeros if (h_0, c_0) is not provided.
        * **c_0**: tensor of shape :math:`(D * \text{num\_layers}, H_{cell})` for unbatched input or
          :math:`(D * \text{num\_layers}, N, H_{cell})`: the initial cell state. Defaults to zeros
          if (h_0, c_0) is not provided.

        where:

        .. math::
            \begin{aligned}
                N ={} & \text{batch size} \\
                L ={} & \text{sequence length} \\
                D ={} & 2 \text{ if bidirectional=True otherwise } 1 \\
                H_{in} ={} & \text{input\_size} \\
                H_{cell} ={} & \text{hidden\_size} \\
                H_{out} ={} & \text{proj\_size if } \text{proj\_size}>0 \text{ otherwise hidden\_size} \\
            \end{aligned}

    Outputs: output, (h_n, c_n)
        * **output**: tensor of shape :math:`(L, D * H_{out})` for unbatched input,
          :math:`(L, N, D * H_{out})` when ``batch_first=False`` or :math:`(N, L, D * H_{out})`
          when ``batch_first=True``: the last layer's `h_t` for each `t`, forward and reverse
          directions concatenated; a PackedSequence if the input was one.
        * **h_n**: tensor of shape :math:`(D * \text{num\_layers}, H_{out})` for unbatched input or
          :math:`(D * \text{num\_layers}, N, H_{out})`: the final hidden state of each layer and
          direction (the reverse direction's is its state after the first step).
        * **c_n**: tensor of shape :math:`(D * \text{num\_layers}, H_{cell})` for unbatched input or
          :math:`(D * \text{num\_layers}, N, H_{cell})`: the final cell state of each layer and
          direction.

    Attributes:
        weight_ih_l[k]: the learnable input-hidden weights of layer k `(W_ii|W_if|W_ig|W_io)`, of
            shape `(4*hidden_size, input_size)` for `k = 0`, otherwise
            `(4*hidden_size, num_directions * H_out)`
        weight_hh_l[k]: the learnable hidden-hidden weights of layer k `(W_hi|W_hf|W_hg|W_ho)`, of
            shape `(4*hidden_size, H_out)`
        bias_ih_l[k]: the learnable input-hidden bias of layer k `(b_ii|b_if|b_ig|b_io)`, of shape
            `(4*hidden_size)`
        bias_hh_l[k]: the learnable hidden-hidden bias of layer k `(b_hi|b_hf|b_hg|b_ho)`, of shape
            `(4*hidden_size)`
        weight_hr_l[k]: the learnable projection weights of layer k, of shape
            `(proj_size, hidden_size)`; only with ``proj_size > 0``
        weight_peephole_l[k]: the peepholes `(p_i|p_f|p_o)` of layer k, of shape
            `(3*hidden_size)`; only with ``peephole=True``
        ln_weight_ih_l[k], ln_weight_hh_l[k]: the layer-norm gains of W x and U h of layer k, of
            shape `(4*hidden_size)`; ln_weight_c_l[k], ln_bias_c_l[k]: gain and bias of the cell's
            layer norm, of shape `(hidden_size)`; only with ``layer_norm=True``
        weight_*_l[k]_reverse, bias_*_l[k]_reverse, ln_*_l[k]_reverse: the same for the reverse
            direction; only with ``bidirectional=True``
        all_weights, _flat_weights, _flat_weights_names: the parameters (and their names) per
            layer direction and in one flat list, as nn.LSTM lists them; ``flatten_parameters()``
            is accepted and does nothing (nn.LSTM packs weights for cuDNN only)

    All the weights and biases are initialized from :math:`\mathcal{U}(-\sqrt{k}, \sqrt{k})` where
    :math:`k = \frac{1}{\text{hidden\_size}}`, drawn in nn.LSTM's order: under the same seed both
    modules start from the same numbers. ``batch_first`` is ignored for unbatched inputs.

    Examples::

        >>> import torch, lstmbyhand
        >>> rnn = lstmbyhand.LSTM(10, 20, 2)
        >>> input = torch.randn(5, 3, 10)
        >>> h0 = torch.randn(2, 3, 20)
        >>> c0 = torch.randn(2, 3, 20)
        >>> output, (hn, cn) = rnn(input, (h0, c0))
        >>> output.shape, hn.shape, cn.shape
        (torch.Size([5, 3, 20]), torch.Size([2, 3, 20]), torch.Size([2, 3, 20]))
        >>> theirs = rnn.to_torch()  # a torch.nn.LSTM with these weights
        >>> torch.allclose(output, theirs(input, (h0, c0))[0], atol=1e-6)
        True
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
        *,
        peephole: bool = False,
        coupled: bool = False,
        layer_norm: bool = False,
        forget_bias: float = 0.0,
        recurrent_dropout: float = 0.0,
        zoneout: float | tuple[float, float] = 0.0,
        ablate: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        _check_arguments(input_size, hidden_size, num_layers, bias, batch_first, dropout, proj_size)
        self.options = CellOptions.of(
            peephole, coupled, layer_norm, forget_bias, recurrent_dropout, zoneout, ablate
        )
        self._plain = self.options.plain  # (options are fixed at construction, with the parameters)
        self.mode = "LSTM"
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        self.backend = "bptt"

        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        H, P, D = hidden_size, proj_size or hidden_size, self.num_directions
        self._flat_weights_names: list[str] = []  # every parameter's name, in nn.LSTM's order
        self._all_weights: list[list[str]] = []  # the same names, one list per layer direction
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else D * P
            for direction in range(D):
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                shapes: dict[str, tuple[int, ...]] = {
                    "weight_ih": (4 * H, layer_input),
                    "weight_hh": (4 * H, P),
                }
                if bias:
                    shapes |= {"bias_ih": (4 * H,), "bias_hh": (4 * H,)}
                if proj_size > 0:
                    shapes["weight_hr"] = (P, H)
                shapes |= self.options.variant.extra_shapes(H)
                for name, shape in shapes.items():
                    self.register_parameter(
                        name + suffix, nn.Parameter(torch.empty(shape, **factory))
                    )
                self._all_weights.append([name + suffix for name in shapes])
                self._flat_weights_names.extend(self._all_weights[-1])
        self._roles = self._role_names()
        self.reset_parameters()

    def _role_names(self) -> list[tuple[str, str, str, str, str]]:
        """Per layer direction (k = layer * D + direction): the names of weight_ih, weight_hh,
        bias_ih, bias_hh and weight_hr, present or not (a forward reads each by name, afresh)."""
        roles = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
        suffixes = [
            f"_l{layer}" + ("_reverse" if direction == 1 else "")
            for layer in range(self.num_layers)
            for direction in range(self.num_directions)
        ]
        return [tuple(role + s for role in roles) for s in suffixes]  # type: ignore[misc]

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_plain", self.options.plain)  # (an LSTM pickled before these)
        self.__dict__.setdefault("_roles", self._role_names())

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def reset_parameters(self) -> None:
        _uniform_init(self, self.hidden_size)
        for names in self._all_weights:
            suffix = names[0][len("weight_ih") :]
            by_role = {name[: -len(suffix)]: getattr(self, name) for name in names}
            self.options.initialize(by_role, self.hidden_size)

    @property
    def _flat_weights(self) -> list[Tensor | None]:
        """The parameters in nn.LSTM's flat order (`_flat_weights_names`), read afresh on each use."""
        return [getattr(self, name, None) for name in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """The parameters of each layer direction: [[weight_ih_l0, weight_hh_l0, ...], ...]."""
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def flatten_parameters(self) -> None:
        """nn.LSTM's call to pack the weights into one buffer for cuDNN; a no-op here, as in
        nn.LSTM on any device but a CUDA one: these kernels read each parameter where it is."""

    def extra_repr(self) -> str:
        """nn.LSTM's text: the sizes, then each argument that differs from its default."""
        shown = {
            "proj_size": self.proj_size != 0,
            "num_layers": self.num_layers != 1,
            "bias": self.bias is not True,
            "batch_first": self.batch_first is not False,
            "dropout": self.dropout != 0,
            "bidirectional": self.bidirectional is not False,
        }
        text = f"{self.input_size}, {self.hidden_size}"
        text += "".join(f", {k}={getattr(self, k)}" for k, show in shown.items() if show)
        return text + "".join(f", {k}={v!r}" for k, v in self.options.non_defaults().items())

    def direction_weights(self, layer: int, direction: int) -> DirectionWeights:
        """The parameters of one layer direction, by role (bias and projection may be None)."""
        suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        get = self._parameters.get  # by name, without walking the module tree (a hot path)
        weight_ih, weight_hh = get("weight_ih" + suffix), get("weight_hh" + suffix)
        if weight_ih is None or weight_hh is None:
            raise IndexError(f"expected a layer below {self.num_layers}, got layer {layer}")
        return DirectionWeights(
            weight_ih, weight_hh, get("bias_ih" + suffix), get("bias_hh" + suffix),
            get("weight_hr" + suffix),
        )  # fmt: skip

    # -- conversion -------------------------------------------------------------------------------

    @staticmethod
    def _config(module: nn.Module) -> dict[str, Any]:
        """The constructor arguments of an LSTM, ours or torch's."""
        keys = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout")
        return {k: getattr(module, k) for k in (*keys, "bidirectional", "proj_size")}

    @classmethod
    def from_torch(cls, module: nn.LSTM) -> LSTM:
        """An lstmbyhand.LSTM with the same configuration and a copy of `module`'s weights."""
        if not isinstance(module, nn.LSTM):
            raise TypeError(f"expected a torch.nn.LSTM, got {type(module).__name__}")
        weight = module.get_parameter("weight_ih_l0")
        ours = cls(**cls._config(module), device=weight.device, dtype=weight.dtype)
        ours.load_state_dict(module.state_dict())
        return ours

    def to_torch(self) -> nn.LSTM:
        """A torch.nn.LSTM with the same configuration and a copy of these weights (refused for a
        variant nn.LSTM has no form of: peepholes, coupled gates, layer norm, ablations, recurrent
        dropout, zoneout; a forget_bias is only an initialization and converts)."""
        if not self.options.plain:
            given = {k: v for k, v in self.options.non_defaults().items() if k != "forget_bias"}
            raise ValueError(
                "to_torch: expected a cell torch.nn.LSTM can express (no variant options), got "
                + ", ".join(f"{k}={v!r}" for k, v in given.items())
            )
        weight = self.get_parameter("weight_ih_l0")
        theirs = nn.LSTM(**self._config(self), device=weight.device, dtype=weight.dtype)
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
        batch_sizes: Tensor | None
        sorted_idx: Tensor | None
        unsorted_idx: Tensor | None
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
                raise ValueError(f"LSTM: Expected input to be 2D or 3D, got {input.dim()}D instead")
            batched = input.dim() == 3
            x = input if batched else input.unsqueeze(1)
            if batched and self.batch_first:
                x = x.transpose(0, 1)
            batch_sizes = sorted_idx = unsorted_idx = None
        self._check_input(x, packed)
        T, B, _ = x.shape
        plain, reference = self._plain, self.backend == "reference"
        h0: Tensor | None
        c0: Tensor | None
        if hx is None and plain and not record and self.backend == "bptt":
            h0 = c0 = None  # zero states, made inside the operator (none in a compiled graph)
        else:
            h0, c0 = self._initial_state(hx, B, batched, x, packed)  # (L*D, B, P), (L*D, B, H)
            if sorted_idx is not None:
                h0, c0 = h0.index_select(1, sorted_idx), c0.index_select(1, sorted_idx)
        if self.backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, got {self.backend!r}")

        # Lean on purpose: torch.compile traces this loop bytecode by bytecode (each weight read
        # by name, the cell's kind read once), and eager pays its Python on every call.
        get, D = self._parameters.get, 2 if self.bidirectional else 1
        h_last: list[Tensor] = []  # per layer direction: (B, P)
        c_last: list[Tensor] = []  # (B, H)
        traces: list[list[GateTrace]] = []
        layer_input = x  # (T, B, I) then (T, B, D*P)
        for layer in range(self.num_layers):
            outputs: list[Tensor] = []
            layer_traces: list[GateTrace] = []
            for direction in range(D):
                k = layer * D + direction
                n_ih, n_hh, n_bih, n_bhh, n_hr = self._roles[k]
                w_ih, w_hh, b_ih, b_hh, w_hr = (
                    get(n_ih),
                    get(n_hh),
                    get(n_bih),
                    get(n_bhh),
                    get(n_hr),
                )
                if w_ih is None or w_hh is None:
                    raise IndexError(f"expected a layer below {self.num_layers}, got layer {layer}")
                w = (w_ih, w_hh, b_ih, b_hh, w_hr)
                reverse = direction == 1
                trace = None
                if h0 is None or c0 is None:  # plain, bptt, no hx
                    out, h, c = ops.lstm_sequence(layer_input, None, None, *w, batch_sizes, reverse)
                elif not plain:
                    out, h, c, trace = self._variant_direction(
                        layer_input, h0[k], c0[k], layer, direction, batch_sizes, record
                    )
                elif record or reference:
                    out, h, c, trace = reference_sequence(
                        layer_input, h0[k], c0[k], *w, batch_sizes, reverse, record=record
                    )
                else:
                    out, h, c = ops.lstm_sequence(
                        layer_input, h0[k], c0[k], *w, batch_sizes, reverse
                    )
                if trace is not None:
                    layer_traces.append(
                        trace if unsorted_idx is None else trace.select_batch(unsorted_idx)
                    )
                outputs.append(out)  # (T, B, P)
                h_last.append(h)
                c_last.append(c)
            layer_input = outputs[0] if D == 1 else torch.cat(outputs, dim=2)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, training=True)
            traces.append(layer_traces)
        output: Tensor | PackedSequence = layer_input  # (T, B, D*P)
        h_n, c_n = torch.stack(h_last), torch.stack(c_last)  # (L*D, B, P), (L*D, B, H)

        if packed:
            output = PackedSequence(
                layer_input.reshape(T * B, -1)[scatter], input.batch_sizes, sorted_idx, unsorted_idx
            )
            if unsorted_idx is not None:
                h_n, c_n = h_n.index_select(1, unsorted_idx), c_n.index_select(1, unsorted_idx)
        elif not batched:
            output, h_n, c_n = layer_input.squeeze(1), h_n.squeeze(1), c_n.squeeze(1)
        elif self.batch_first:
            output = layer_input.transpose(0, 1)
        return output, (h_n, c_n), traces

    def _variant_direction(
        self, x: Tensor, h0: Tensor, c0: Tensor, layer: int, direction: int,
        batch_sizes: Tensor | None, record: bool,
    ) -> tuple[Tensor, Tensor, Tensor, GateTrace | None]:  # fmt: skip
        """One layer direction of a variant cell, with this call's masks (drawn here, in order:
        layer by layer, direction by direction)."""
        w = self.direction_weights(layer, direction)
        suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        extras = [self._parameters.get(name + suffix) for name in VariantWeights._fields[4:]]
        bias = bptt.combined_bias(w.bias_ih, w.bias_hh)
        weights = VariantWeights(w.weight_ih, w.weight_hh, bias, w.weight_hr, *extras)
        T, B, _ = x.shape
        masks = self.options.masks(x, T, B, c0.shape[1], h0.shape[1], self.training)
        v, reverse = self.options.variant, direction == 1
        if record or self.backend == "reference":
            return variant_sequence(x, h0, c0, weights, v, masks, batch_sizes, reverse, record)
        return *variant_lstm_sequence(x, h0, c0, weights, v, masks, batch_sizes, reverse), None

    def _check_input(self, x: Tensor, packed: bool = False) -> None:
        """nn.LSTM's checks of the input x (T, B, I), in its order, with its types and texts. A
        PackedSequence's dtype nn.LSTM does not check: its kernel's first product refuses it."""
        weight = cast(Tensor, self.weight_ih_l0)
        if packed and x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
            raise RuntimeError(
                "mat1 and mat2 must have the same dtype, but got "
                f"{_scalar_type(x.dtype)} and {_scalar_type(weight.dtype)}"
            )
        if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
            raise ValueError(
                f"RNN input dtype ({x.dtype}) does not match weight dtype ({weight.dtype}). "
                f"Convert input: input.to({weight.dtype}), or convert model: model.to({x.dtype})"
            )
        if x.shape[-1] != self.input_size:
            raise RuntimeError(
                "input.size(-1) must be equal to input_size. "
                f"Expected {self.input_size}, got {x.shape[-1]}"
            )
        if x.shape[0] == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")

    def _initial_state(
        self, hx, B: int, batched: bool, x: Tensor, packed: bool = False
    ) -> tuple[Tensor, Tensor]:
        """(h_0, c_0) as (D*num_layers, B, P) and (D*num_layers, B, H): zeros when hx is None, else
        hx checked as nn.LSTM checks it (its order, types and texts) and unsqueezed if unbatched.
        With a PackedSequence nn.LSTM checks no rank: its kernel indexes dimension 2 of each state."""
        LD, H = self.num_layers * self.num_directions, self.hidden_size
        P = self.proj_size or H
        if hx is None:
            return x.new_zeros(LD, B, P), x.new_zeros(LD, B, H)
        if packed:
            for state in hx[:2]:
                if state.dim() < 3:
                    r = state.dim()
                    raise IndexError(
                        f"Dimension out of range (expected to be in range of [{-r}, {r - 1}], "
                        "but got 2)"
                    )
        rank, kind = (3, "batched 3-D") if batched else (2, "unbatched 2-D")
        if hx[0].dim() != rank or hx[1].dim() != rank:
            raise RuntimeError(
                f"For {kind} input, hx and cx should also be {rank}-D but got "
                f"({hx[0].dim()}-D, {hx[1].dim()}-D) tensors"
            )
        if not batched:
            hx = (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
        for k, expected in enumerate(((LD, B, P), (LD, B, H))):
            if hx[k].shape != expected:
                raise RuntimeError(f"Expected hidden[{k}] size {expected}, got {list(hx[k].shape)}")
        if not isinstance(hx, (tuple, list)):
            raise TypeError(
                f"lstm(): argument 'hx' must be tuple of Tensors, not {type(hx).__name__}"
            )
        if len(hx) != 2:
            raise RuntimeError("lstm expects two hidden states")
        for k in range(2):
            if hx[k].dtype != x.dtype:
                raise RuntimeError(f"Expected hidden[{k}] dtype {x.dtype}, got {hx[k].dtype}")
        return hx[0], hx[1]


def _scalar_type(dtype: torch.dtype) -> str:
    """torch's C++ name of a dtype, as its kernels' messages print it: Float, Double, Half, ..."""
    return torch.empty(0, dtype=dtype).type().removeprefix("torch.").removesuffix("Tensor")


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


def _check_cell_hx(hx) -> None:
    """The first of torch's lstm_cell checks: hx = (h, c), a tuple or list of two."""
    if not isinstance(hx, (tuple, list)):
        raise TypeError(
            "lstm_cell(): argument 'hx' (position 2) must be tuple of Tensors, "
            f"not {type(hx).__name__}"
        )
    if len(hx) != 2:
        raise RuntimeError("lstm_cell expects two hidden states")


def _check_cell_state(x: Tensor, hx, weight_ih: Tensor, weight_hh: Tensor) -> None:
    """The checks torch's lstm_cell kernel makes of x (N, I) and hx = (h, c), each (N, H), after
    `_check_cell_hx`, in its order, with its types and texts (nn.LSTMCell has no checks of its own
    beyond the ranks). The compiled `cell_step` (nn/csrc/cell_step.cpp) makes them itself."""
    if x.size(1) != weight_ih.size(1):
        raise RuntimeError(
            f"input has inconsistent input_size: got {x.size(1)} expected {weight_ih.size(1)}"
        )
    for k, state in enumerate(hx):
        if x.size(0) != state.size(0):
            raise RuntimeError(
                f"Input batch size {x.size(0)} doesn't match hidden{k} batch size {state.size(0)}"
            )
        if state.size(1) != weight_hh.size(1):
            raise RuntimeError(
                f"hidden{k} has inconsistent hidden_size: got {state.size(1)}, "
                f"expected {weight_hh.size(1)}"
            )


def _compiled_cell_step(x: Tensor, hx) -> Callable[..., tuple[Tensor, Tensor]] | None:
    """`cell_step`'s compiled twin (nn/csrc/cell_step.cpp: the same ATen operators, called from
    C++), or None where only the Python function will do: the extension not built or turned off;
    torch.compile or jit.trace capturing (they record Python's calls); a tensor subclass or mode
    with __torch_function__ (it overrides Python's calls, which C++ does not make)."""
    kernels = native.compiled()
    if kernels is None or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return None
    if has_torch_function((x, *hx)):  # hx's entries: Tensors or not, torch_function sees them
        return None
    return kernels.cell_step


def _autocast_cell_step(x: Tensor, hx, weights: tuple) -> tuple[Tensor, Tensor]:
    """`cell_step` under autocast as torch's lstm_cell runs there (it is not on autocast's lists; its
    products are): the products' operands x, h and the weights in the autocast dtype, so z and the
    gates are in it; c, left alone, promotes c' and h' to its dtype. float64 is never recast. The
    step runs with autocast off: it would recast the first product but not the in-place second."""
    device = x.device.type
    dtype = torch.get_autocast_dtype(device)

    def cast(t: Tensor) -> Tensor:
        return t.to(dtype) if t.is_floating_point() and t.dtype != torch.float64 else t

    weight_ih, weight_hh, *biases = (None if w is None else cast(w) for w in weights)
    assert weight_ih is not None and weight_hh is not None
    with torch.autocast(device, enabled=False):
        x, h = cast(x), cast(hx[0])
        _check_cell_state(x, (h, hx[1]), weight_ih, weight_hh)
        return cell_step(x, h, hx[1], weight_ih, weight_hh, *biases)


def cell_step(
    x: Tensor,
    h: Tensor,
    c: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """`gates.lstm_cell` (the specification) with the four gates kept stacked, in few torch ops.

    x (N, I), h (N, H), c (N, H) -> h' (N, H), c' (N, H). F1 is two GEMMs, the second accumulating
    into the first, z = x Wᵀ + (b_ih + b_hh) + h Uᵀ (N, 4H); F2-F4 are nine element-wise ops, as in
    nn.LSTMCell's kernel (an addcmul would save one, but its backward runs four more operators).
    Autograd differentiates it, to any order. nn/csrc/cell_step.cpp is its compiled twin: the same
    operators in the same order, called from C++.
    """
    if bias_ih is None or bias_hh is None:
        z = torch.mm(x, weight_ih.t())  # (N, 4H)
    else:
        z = torch.addmm(bias_ih + bias_hh, x, weight_ih.t())  # (N, 4H)
    z = z.addmm_(h, weight_hh.t())  # F1
    i, f, g, o = z.unsafe_chunk(4, dim=1)  # each (N, H); no views tracked: none is written
    c_next = (torch.sigmoid(f) * c).add_(torch.sigmoid(i) * torch.tanh(g))  # F2, F3
    h_next = torch.sigmoid(o) * torch.tanh(c_next)  # F2, F4
    return h_next, c_next


class LSTMCell(nn.Module):
    r"""A long short-term memory (LSTM) cell: torch.nn.LSTMCell's arguments, parameters, checks and
    numbers, one step of `gates.lstm_cell`.

    .. math::

        \begin{array}{ll}
        i = \sigma(W_{ii} x + b_{ii} + W_{hi} h + b_{hi}) \\
        f = \sigma(W_{if} x + b_{if} + W_{hf} h + b_{hf}) \\
        g = \tanh(W_{ig} x + b_{ig} + W_{hg} h + b_{hg}) \\
        o = \sigma(W_{io} x + b_{io} + W_{ho} h + b_{ho}) \\
        c' = f \odot c + i \odot g \\
        h' = o \odot \tanh(c') \\
        \end{array}

    where :math:`\sigma` is the sigmoid function and :math:`\odot` the Hadamard product. The step
    runs as `cell_step`: the gates stacked, two GEMMs and nine element-wise ops, differentiated by
    autograd (so double backward, torch.func and autocast work as for any torch ops).

    Args:
        input_size: The number of expected features in the input `x`
        hidden_size: The number of features in the hidden state `h`
        bias: If ``False``, then the layer does not use bias weights `b_ih` and `b_hh`.
            Default: ``True``
        device: where the parameters are created. Default: ``None`` (the default device)
        dtype: the parameters' dtype. Default: ``None`` (the default dtype)
        {variant_args}

    Inputs: input, (h_0, c_0)
        - **input** of shape :math:`(N, H_{in})` or :math:`(H_{in})`: the input features
        - **h_0** of shape :math:`(N, H_{out})` or :math:`(H_{out})`: the initial hidden state
        - **c_0** of shape :math:`(N, H_{out})` or :math:`(H_{out})`: the initial cell state

          If `(h_0, c_0)` is not provided, both **h_0** and **c_0** default to zero.

        where :math:`N` is the batch size, :math:`H_{in}` = input_size and
        :math:`H_{out}` = hidden_size.

    Outputs: (h_1, c_1)
        - **h_1** of shape :math:`(N, H_{out})` or :math:`(H_{out})`: the next hidden state
        - **c_1** of shape :math:`(N, H_{out})` or :math:`(H_{out})`: the next cell state

    Attributes:
        weight_ih: the learnable input-hidden weights `(W_ii|W_if|W_ig|W_io)`, of shape
            `(4*hidden_size, input_size)`
        weight_hh: the learnable hidden-hidden weights `(W_hi|W_hf|W_hg|W_ho)`, of shape
            `(4*hidden_size, hidden_size)`
        bias_ih: the learnable input-hidden bias `(b_ii|b_if|b_ig|b_io)`, of shape
            `(4*hidden_size)`, or None with ``bias=False``
        bias_hh: the learnable hidden-hidden bias `(b_hi|b_hf|b_hg|b_ho)`, of shape
            `(4*hidden_size)`, or None with ``bias=False``

    All the weights and biases are initialized from :math:`\mathcal{U}(-\sqrt{k}, \sqrt{k})` where
    :math:`k = \frac{1}{\text{hidden\_size}}`, drawn in nn.LSTMCell's order: under the same seed
    both modules start from the same numbers.

    Examples::

        >>> import torch, lstmbyhand
        >>> rnn = lstmbyhand.LSTMCell(10, 20)  # (input_size, hidden_size)
        >>> input = torch.randn(2, 3, 10)  # (time_steps, batch, input_size)
        >>> hx = torch.randn(3, 20)  # (batch, hidden_size)
        >>> cx = torch.randn(3, 20)
        >>> output = []
        >>> for i in range(input.size()[0]):
        ...     hx, cx = rnn(input[i], (hx, cx))
        ...     output.append(hx)
        >>> output = torch.stack(output, dim=0)
        >>> output.shape
        torch.Size([2, 3, 20])
        >>> theirs = torch.nn.LSTMCell(10, 20)
        >>> _ = theirs.load_state_dict(rnn.state_dict())
        >>> torch.allclose(rnn(input[0])[0], theirs(input[0])[0], atol=1e-6)
        True
    """

    weight_ih: nn.Parameter
    weight_hh: nn.Parameter
    bias_ih: nn.Parameter | None
    bias_hh: nn.Parameter | None

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        peephole: bool = False,
        coupled: bool = False,
        layer_norm: bool = False,
        forget_bias: float = 0.0,
        recurrent_dropout: float = 0.0,
        zoneout: float | tuple[float, float] = 0.0,
        ablate: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.options = CellOptions.of(
            peephole, coupled, layer_norm, forget_bias, recurrent_dropout, zoneout, ablate
        )
        self._recurrent_mask: Tensor | None = None  # (N, H), kept for a sequence
        self._plain = self.options.plain  # (options are fixed at construction, with the parameters)
        # nn.LSTMCell checks nothing here: torch.empty refuses what it refuses, with its texts
        self.weight_ih = nn.Parameter(torch.empty((4 * hidden_size, input_size), **factory))
        self.weight_hh = nn.Parameter(torch.empty((4 * hidden_size, hidden_size), **factory))
        for name in ("bias_ih", "bias_hh"):
            bias_vector = nn.Parameter(torch.empty(4 * hidden_size, **factory)) if bias else None
            self.register_parameter(name, bias_vector)
        for name, shape in self.options.variant.extra_shapes(hidden_size).items():
            self.register_parameter(name, nn.Parameter(torch.empty(shape, **factory)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _uniform_init(self, self.hidden_size)
        present = {k: v for k, v in self._parameters.items() if v is not None}
        self.options.initialize(present, self.hidden_size)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_plain", self.options.plain)  # (a cell pickled before _plain)

    def reset_recurrent_dropout(self) -> None:
        """Start a new sequence: the next step draws a new recurrent dropout mask."""
        self._recurrent_mask = None

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        text = text if self.bias is True else text + f", bias={self.bias}"
        return text + "".join(f", {k}={v!r}" for k, v in self.options.non_defaults().items())

    def forward(
        self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        if not isinstance(input, Tensor):  # nn.LSTMCell: AttributeError from input.dim()
            raise TypeError(f"LSTMCell: expected input to be a Tensor, got {type(input).__name__}")
        rank = input.dim()
        if rank != 2 and rank != 1:
            raise ValueError(f"LSTMCell: Expected input to be 1D or 2D, got {rank}D instead")
        if hx is not None:
            for k, state in enumerate(hx):
                if state.dim() not in (1, 2):
                    raise ValueError(
                        f"LSTMCell: Expected hx[{k}] to be 1D or 2D, got {state.dim()}D instead"
                    )
        batched = rank == 2
        x = input if batched else input.unsqueeze(0)  # (N, I)
        if hx is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size)  # (N, H)
            hx = (zeros, zeros)
            self._recurrent_mask = None  # a new sequence
        elif not batched:
            hx = (hx[0].unsqueeze(0), hx[1].unsqueeze(0))
        _check_cell_hx(hx)
        if self._plain:
            weights = (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
            if torch.is_autocast_enabled(x.device.type):
                h, c = _autocast_cell_step(x, hx, weights)
            else:
                step = _compiled_cell_step(x, hx)
                if step is None:
                    _check_cell_state(x, hx, self.weight_ih, self.weight_hh)
                    step = cell_step
                h, c = step(x, *hx, *weights)  # type: ignore[arg-type]
        else:
            _check_cell_state(x, hx, self.weight_ih, self.weight_hh)
            h, c = self._variant_step(x, *hx)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))

    def _variant_step(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """One step of a variant cell (`variants.cell_forward`, autograd), with its masks: zoneout's
        drawn at every step, the recurrent dropout mask kept for the sequence."""
        N, H = x.shape[0], self.hidden_size
        masks = self.options.masks(x, 1, N, H, H, self.training)
        m = masks.recurrent
        if m is not None:
            kept = self._recurrent_mask
            if kept is None or kept.shape != m.shape or kept.dtype != m.dtype:
                self._recurrent_mask = kept = m
            m = kept
        bias = bptt.combined_bias(self.bias_ih, self.bias_hh)
        extras = [self._parameters.get(name) for name in VariantWeights._fields[4:]]
        w = VariantWeights(self.weight_ih, self.weight_hh, bias, None, *extras)
        zeta_c, zeta_h = (None if z is None else z[0] for z in masks[1:])
        h_t, c_t, _ = cell_forward(
            self.options.variant, w, x @ self.weight_ih.T, h, c, m, zeta_c, zeta_h
        )
        return h_t, c_t


for _module in (LSTM, LSTMCell):  # both docstrings take the one text of the variant keywords
    _module.__doc__ = str(_module.__doc__).replace("        {variant_args}", _VARIANT_ARGS.rstrip())
