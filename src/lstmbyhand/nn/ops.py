"""One layer direction as registered PyTorch operators: `torch.ops.lstmbyhand.{forward, forward_inference, backward}`.

Each operator is opaque to PyTorch's tracers (FakeTensor, `torch.export`, `torch.compile`,
`torch.jit.trace`, functorch): they see one node per layer direction, with a shape-only fake kernel,
an autograd formula and a vmap rule registered beside it. Inside, the operator runs the kernels that
`bptt.kernels_for` picks (compiled C++ on CPU, Triton on CUDA when available, else bptt.py's PyTorch
ops), always on fresh tensors and never writing to its inputs.

    forward(x, h0?, c0?, W, U, b_ih?, b_hh?, W_hr?, batch_sizes?, reverse)
        -> output (T, B, P), h_n (B, P), c_n (B, H), gates (T, B, 4H), h_prev (T, B, P),
           c_prev (T, B, H), tanh_c (T, B, H)                       (the last four: the cache)
    forward_inference(same arguments) -> output, h_n, c_n
    backward(d_output?, d_hn?, d_cn?, x, W, U, W_hr?, batch_sizes?, reverse, *cache, need_dx)
        -> dx (or an empty tensor when need_dx is false), dh0, dc0, dW, dU, db,
           dW_hr (an empty tensor without a projection)

`?`: optional (None). An absent h0 or c0 is a zero state and an absent output gradient a zero one,
made inside the operator: a compiled graph holds no kernel that only writes zeros, and the biases'
sum b = b_ih + b_hh happens inside too (torch.compile generated a kernel for each; see
docs/performance.md). The backward leaves unused output gradients unmaterialized (None).

Half precision (float16, bfloat16) on CPU runs in float32 (the compiled kernels are float32/float64
only, and float32 accumulation is what nn.LSTM's oneDNN path does too): the results come back in
the input's dtype, the cache stays float32. `lstm_sequence` applies autocast the way nn.LSTM does:
inside an autocast region, float32 inputs and weights are cast to the autocast dtype (bfloat16 or
float16) and the results come out in it; float64 is left alone.

Gradients: `Direction` (an autograd.Function, because torch.func cannot see torch.library's autograd
registration on this torch) and the registration on `forward` share `_setup_context` and
`_backward`; the backward runs `DirectionBackward`, whose forward is the `backward` operator (the
hand BPTT) and whose own backward gives second and higher derivatives by differentiating the
readable loop twice (see bptt.py's docstring).
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor
from torch.autograd import forward_ad

from lstmbyhand.nn import bptt, native
from lstmbyhand.nn.sequence import reference_sequence

HALF = (torch.float16, torch.bfloat16)


def _compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype the kernels run in: float32 for half types on CPU, else x's own."""
    return torch.float32 if x.dtype in HALF and x.device.type == "cpu" else x.dtype


def _cast(t: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    if t is None:
        return None
    return _as(t, dtype).contiguous()


def _as(t: Tensor, dtype: torch.dtype) -> Tensor:
    return t if t.dtype == dtype else t.to(dtype)


def _no_autocast(x: Tensor):
    """The kernels run in the dtype they are given: autocast must not recast their products."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.autocast(device, enabled=False)
    return contextlib.nullcontext()


# -- the operators --------------------------------------------------------------------------------

_LIBRARY = torch.library.Library("lstmbyhand", "DEF")


def _operator(fn):
    """Define lstmbyhand::<fn's name> (schema from fn's type hints, mutates nothing) with fn as its
    kernel on every device; return the operator. Library.define rather than torch.library.custom_op,
    whose eager calls import torch._dynamo on first use (seconds before a model's first step)."""
    _LIBRARY.define(fn.__name__ + torch.library.infer_schema(fn, mutates_args=()))
    _LIBRARY.impl(fn.__name__, fn, "CompositeExplicitAutograd")
    return getattr(torch.ops.lstmbyhand, fn.__name__)


def _states(
    x: Tensor, h0: Tensor | None, c0: Tensor | None, weight_hh: Tensor,
    dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """h0 (B, P) and c0 (B, H) with zeros (of `dtype`, else x's) where absent."""
    B, (G, P) = x.shape[1], weight_hh.shape
    h0 = x.new_zeros(B, P, dtype=dtype) if h0 is None else h0
    c0 = x.new_zeros(B, G // 4, dtype=dtype) if c0 is None else c0
    return h0, c0


def _kernel_args(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr) -> list:
    """The kernels' (x, h0, c0, W, U, b, W_hr) in the compute dtype, contiguous: absent states as
    zeros, b = b_ih + b_hh (None without biases)."""
    dtype = _compute_dtype(x)
    h0, c0 = _states(x, h0, c0, weight_hh, dtype)
    b_ih, b_hh = _cast(bias_ih, dtype), _cast(bias_hh, dtype)
    bias = bptt.combined_bias(b_ih, b_hh)
    return [
        *(_cast(t, dtype) for t in (x, h0, c0, weight_ih, weight_hh)),
        bias,
        _cast(weight_hr, dtype),
    ]


@_operator
def forward(
    x: Tensor,
    h0: Tensor | None,
    c0: Tensor | None,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None,
    bias_hh: Tensor | None,
    weight_hr: Tensor | None,
    batch_sizes: Tensor | None,
    reverse: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """F1-F6 over all steps with the backward's cache: `bptt.forward` on the chosen kernels."""
    args = _kernel_args(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr)
    with _no_autocast(x):
        output, h_n, c_n, *cache = bptt.kernels_for(x).forward(*args, batch_sizes, reverse)
    return _as(output, x.dtype), _as(h_n, x.dtype), _as(c_n, x.dtype), *cache


@torch.library.register_fake("lstmbyhand::forward")
def _(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, batch_sizes, reverse):
    T, B, _ = x.shape
    H, P = weight_hh.shape[0] // 4, weight_hh.shape[1]
    cache = {"dtype": _compute_dtype(x)}
    return (
        x.new_empty(T, B, P),  # output
        x.new_empty(B, P),  # h_n
        x.new_empty(B, H),  # c_n
        x.new_empty(T, B, 4 * H, **cache),  # gates
        x.new_empty(T, B, P, **cache),  # h_prev
        x.new_empty(T, B, H, **cache),  # c_prev
        x.new_empty(T, B, H, **cache),  # tanh_c
    )


@_operator
def forward_inference(
    x: Tensor,
    h0: Tensor | None,
    c0: Tensor | None,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None,
    bias_hh: Tensor | None,
    weight_hr: Tensor | None,
    batch_sizes: Tensor | None,
    reverse: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """`forward` without the cache: output, h_n, c_n (no gradient will be asked for)."""
    args = _kernel_args(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr)
    with _no_autocast(x):
        output, h_n, c_n = bptt.kernels_for(x).forward_inference(*args, batch_sizes, reverse)
    return _as(output, x.dtype), _as(h_n, x.dtype), _as(c_n, x.dtype)


@torch.library.register_fake("lstmbyhand::forward_inference")
def _(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, batch_sizes, reverse):
    T, B, _ = x.shape
    H, P = weight_hh.shape[0] // 4, weight_hh.shape[1]
    return x.new_empty(T, B, P), x.new_empty(B, P), x.new_empty(B, H)


@_operator
def backward(
    d_output: Tensor | None,
    d_hn: Tensor | None,
    d_cn: Tensor | None,
    x: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    weight_hr: Tensor | None,
    batch_sizes: Tensor | None,
    reverse: bool,
    gates: Tensor,
    h_prev: Tensor,
    c_prev: Tensor,
    tanh_c: Tensor,
    need_dx: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """B6-B1 on the chosen kernels: dx, dh0, dc0, dW, dU, db, dW_hr (empty where not computed).
    An absent output gradient is zero; dh0 and dc0 come in the dtype of d_hn / d_cn, else x's."""
    dtype = gates.dtype
    T, B, _ = x.shape
    P, H = h_prev.shape[2], c_prev.shape[2]
    d_output = x.new_zeros(T, B, P, dtype=dtype) if d_output is None else d_output
    d_hn = x.new_zeros(B, P) if d_hn is None else d_hn
    d_cn = x.new_zeros(B, H) if d_cn is None else d_cn
    kernels = bptt.kernels_for(x)
    skip = {"need_dx": False} if kernels is native.compiled() and not need_dx else {}
    with _no_autocast(x):
        grads = kernels.backward(
            *(_cast(t, dtype) for t in (d_output, d_hn, d_cn, x, weight_ih, weight_hh, weight_hr)),
            batch_sizes,
            reverse,
            *(t.contiguous() for t in (gates, h_prev, c_prev, tanh_c)),
            **skip,
        )
    dx, dh0, dc0, dw_ih, dw_hh, d_bias, dw_hr = grads
    w = weight_ih.dtype
    return (
        _as(dx, x.dtype) if need_dx else x.new_empty(0),
        _as(dh0, d_hn.dtype),
        _as(dc0, d_cn.dtype),
        _as(dw_ih, w),
        _as(dw_hh, w),
        _as(d_bias, w),
        weight_ih.new_empty(0) if weight_hr is None else _as(dw_hr, weight_hr.dtype),
    )


@torch.library.register_fake("lstmbyhand::backward")
def _(d_output, d_hn, d_cn, x, weight_ih, weight_hh, weight_hr, batch_sizes, reverse, *rest):
    *_, need_dx = rest
    B, (G, P) = x.shape[1], weight_hh.shape
    return (
        x.new_empty(x.shape if need_dx else (0,)),
        (x if d_hn is None else d_hn).new_empty(B, P),
        (x if d_cn is None else d_cn).new_empty(B, G // 4),
        weight_ih.new_empty(weight_ih.shape),
        weight_hh.new_empty(weight_hh.shape),
        weight_ih.new_empty(weight_ih.shape[0]),
        weight_ih.new_empty(0) if weight_hr is None else weight_hr.new_empty(weight_hr.shape),
    )


# -- autograd -------------------------------------------------------------------------------------


def _setup_context(ctx, inputs, output) -> None:
    x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, batch_sizes, reverse = inputs
    cache = output[3:]
    ctx.mark_non_differentiable(*cache)
    ctx.set_materialize_grads(False)  # an unused output's gradient stays None: no zeros written
    saved = (x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, batch_sizes)
    ctx.save_for_backward(*saved, *cache)
    ctx.save_for_forward(*saved)  # forward-mode AD (Direction.jvp)
    ctx.reverse = reverse


def _zero_filled(d_outs, x: Tensor, h0: Tensor | None, c0: Tensor | None, cache) -> tuple:
    """The output gradients (output, h_n, c_n) and initial states with zeros where None: the
    readable loop that second derivatives differentiate takes tensors."""
    (T, B, _), P, H = x.shape, cache[1].shape[2], cache[2].shape[2]
    shapes = ((T, B, P), (B, P), (B, H))
    full = [x.new_zeros(n) if d is None else d for d, n in zip(d_outs, shapes, strict=True)]
    states = [x.new_zeros(n) if s is None else s for s, n in zip((h0, c0), shapes[1:], strict=True)]
    return (*full, *states)


def _backward(ctx, d_output, d_hn, d_cn, *_cache_grads):
    x, h0, c0, weight_ih, weight_hh, b_ih, b_hh, weight_hr, batch_sizes, *cache = ctx.saved_tensors
    need_dx = ctx.needs_input_grad[0]
    if torch.is_grad_enabled():  # a graph of the gradient is asked for (create_graph, torch.func)
        *d_outs, h, c = _zero_filled((d_output, d_hn, d_cn), x, h0, c0, cache)
        bias = bptt.combined_bias(b_ih, b_hh)  # (differentiable: reaches both biases)
        primals = (x, h, c, weight_ih, weight_hh, bias, weight_hr)
        grads = DirectionBackward.apply(
            *d_outs, *primals, batch_sizes, ctx.reverse, need_dx, *cache
        )
    else:  # the operator alone: one fewer autograd.Function per call (each costs ~0.1 ms)
        grads = torch.ops.lstmbyhand.backward(
            d_output,
            d_hn,
            d_cn,
            x,
            weight_ih,
            weight_hh,
            weight_hr,
            batch_sizes,
            ctx.reverse,
            *cache,
            need_dx,
        )
    dx, dh0, dc0, dw_ih, dw_hh, d_bias, dw_hr = grads
    return (
        dx if need_dx else None,
        None if h0 is None else dh0,
        None if c0 is None else dc0,
        dw_ih,
        dw_hh,
        None if b_ih is None else d_bias,  # b = b_ih + b_hh: the same gradient for each
        None if b_hh is None else d_bias,
        None if weight_hr is None else dw_hr,
        None,
        None,
    )


torch.library.register_autograd("lstmbyhand::forward", _backward, setup_context=_setup_context)


def _with(primals: list, present: list[int], values) -> list:
    """`primals` with the entries at `present` replaced by `values` (the rest: None stays None)."""
    full = list(primals)
    for i, value in zip(present, values, strict=True):
        full[i] = value
    return full


def _readable(primals: list, batch_sizes: Tensor | None, reverse: bool):
    """The readable loop as a function of the primals that are not None (bias and W_hr may be):
    (run, the indices of those primals). What second derivatives and forward-mode AD differentiate."""
    present = [i for i, p in enumerate(primals) if p is not None]

    def run(*p):
        x, h0, c0, w_ih, w_hh, bias, w_hr = _with(primals, present, p)
        return reference_sequence(x, h0, c0, w_ih, w_hh, bias, None, w_hr, batch_sizes, reverse)[:3]

    return run, present


def _jvp(ctx, *tangents):
    """Forward-mode AD (torch.func.jvp, jacfwd, hessian): the jvp of the readable loop."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes = ctx.saved_tensors
    # the readable loop's primals (x, h0, c0, W, U, b, W_hr): zero states for absent ones, and
    # b = b_ih + b_hh with the tangents' sum
    states = _states(x, h0, c0, w_hh)
    primals = [x, *states, w_ih, w_hh, bptt.combined_bias(b_ih, b_hh), w_hr]
    t_b = [t if t is not None or b is None else torch.zeros_like(b)
           for b, t in ((b_ih, tangents[5]), (b_hh, tangents[6]))]  # fmt: skip
    t_bias = None if b_ih is None or b_hh is None else t_b[0] + t_b[1]
    tangents = (*tangents[:5], t_bias, tangents[7])
    run, present = _readable(primals, batch_sizes, ctx.reverse)
    real = tuple(primals[i] for i in present)
    dots = tuple(
        torch.zeros_like(primals[i]) if tangents[i] is None else tangents[i] for i in present
    )
    _, out_dots = torch.func.jvp(run, real, dots)
    return *out_dots, None, None, None, None  # the cache is not differentiable


class Direction(torch.autograd.Function):
    """`forward` under autograd, seen by torch.func too (same setup_context, backward and jvp)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, batch_sizes, reverse):
        return torch.ops.lstmbyhand.forward(
            x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, batch_sizes, reverse
        )

    setup_context = staticmethod(_setup_context)
    backward = staticmethod(_backward)

    jvp = staticmethod(_jvp)


class _EagerDirection(torch.autograd.Function):
    """`forward` under plain eager autograd: the same forward, setup and backward as the
    operator's registration and `Direction`. The registration's autograd kernel re-binds the
    operator's arguments to its schema on every call (`torch._library.utils.fill_defaults`) and
    `Direction.apply` binds its forward's signature (`inspect.signature`); this Function, old-style
    (forward with ctx), calls the operator below autograd with neither. Used only where nothing
    else looks at the graph (no torch.compile, tracing, torch.func transform, torch function mode
    or forward-mode AD)."""

    @staticmethod
    def forward(ctx, *inputs):
        output = torch.ops.lstmbyhand.forward(*inputs)
        _setup_context(ctx, inputs, output)
        return output

    @staticmethod
    def backward(ctx, *grads):
        return _backward(ctx, *grads)


class DirectionBackward(torch.autograd.Function):
    """The `backward` operator under autograd: its backward is the second derivative.

    The second derivative is not derived by hand: it is the vjp of `first_order`, the gradients of
    the readable loop `reference_sequence` given the output gradients (torch.func.vjp of a vjp), so
    every order above the first is autograd's.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(
        d_output, d_hn, d_cn, x, h0, c0, w_ih, w_hh, bias, w_hr, bs, reverse, need_dx, *cache
    ):
        return torch.ops.lstmbyhand.backward(
            d_output, d_hn, d_cn, x, w_ih, w_hh, w_hr, bs, reverse, *cache, need_dx
        )

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:10])  # d_output, d_hn, d_cn, x, h0, c0, W, U, b, W_hr
        ctx.save_for_forward(*inputs[:10])
        ctx.batch_sizes, ctx.reverse, ctx.need_dx = inputs[10], inputs[11], inputs[12]
        ctx.n_cache = len(inputs) - 13
        ctx.first_order_vjp = None  # (see _first_order_vjp)

    @staticmethod
    def jvp(ctx, *tangents):
        """Forward-mode AD of the gradients (jacfwd over jacrev, hessian): jvp of the readable vjp."""
        d_output, d_hn, d_cn, *primals = ctx.saved_tensors
        run, present = _readable(primals, ctx.batch_sizes, ctx.reverse)

        def first_order(d_outs, *p):
            return torch.func.vjp(run, *p)[1](d_outs)

        saved = (d_output, d_hn, d_cn, *primals)
        dots = [
            t if t is not None or s is None else torch.zeros_like(s)
            for s, t in zip(saved, tangents[:10], strict=True)
        ]
        d_dots, primal_dots = tuple(dots[:3]), [dots[3 + i] for i in present]
        real = [primals[i] for i in present]
        _, grads_dot = torch.func.jvp(
            first_order, ((d_output, d_hn, d_cn), *real), (d_dots, *primal_dots)
        )
        full = _with([None] * len(primals), present, grads_dot)
        if not ctx.need_dx:
            full[0] = torch.zeros(0, dtype=primals[0].dtype)
        if full[6] is None:  # no projection: the placeholder
            full[6] = torch.zeros(0, dtype=primals[3].dtype)
        return tuple(full)

    @staticmethod
    def backward(ctx, *gg):
        d_output, d_hn, d_cn, *primals = ctx.saved_tensors  # (raises if the graph was freed)
        vjp_fn, present = _first_order_vjp(ctx, (d_output, d_hn, d_cn), primals)
        # placeholders (dx when not needed, dW_hr without a projection) have zero cotangents
        cotangents = tuple(
            gg[i]
            if gg[i] is not None and gg[i].shape == primals[i].shape
            else torch.zeros_like(primals[i])
            for i in present
        )
        d_outs, *g_real = vjp_fn(cotangents)
        g_primals = _with([None] * len(primals), present, g_real)
        return *d_outs, *g_primals, None, None, None, *([None] * ctx.n_cache)


def _first_order_vjp(ctx, d_outs: tuple[Tensor, Tensor, Tensor], primals: list):
    """The vjp of `first_order` (the readable loop's gradients as a function of the output gradients
    d_outs and the primals that are not None) at DirectionBackward's saved values, and the indices
    of those primals: (vjp_fn, present).

    A plain backward (no create_graph, no torch.func transform) through a retained graph keeps it on
    ctx for the next one: gradcheck asks each node for several rows (gradgradcheck: ~6), and rebuilding
    the loop, its vjp and their graph for each was a third of the time. The next backward that does
    not retain the graph takes it off again; a graph of the gradients (create_graph) is built afresh.
    """
    plain = not torch.is_grad_enabled() and not torch._C._are_functorch_transforms_active()
    if plain and ctx.first_order_vjp is not None:
        kept = ctx.first_order_vjp
    else:
        run, present = _readable(primals, ctx.batch_sizes, ctx.reverse)

        def first_order(d_outs, *p):
            return torch.func.vjp(run, *p)[1](d_outs)

        real = [primals[i] for i in present]
        kept = torch.func.vjp(first_order, d_outs, *real)[1], present
    if plain:
        retained = torch._C._autograd._get_current_graph_task_keep_graph()
        ctx.first_order_vjp = kept if retained else None
    return kept


# -- vmap -----------------------------------------------------------------------------------------


def _loop_rule(op):
    """vmap by running the operator once per vmapped sample and stacking the results."""

    def rule(info, in_dims, *args):
        results = []
        for k in range(info.batch_size):
            sample = [
                a if d is None else a.select(d, k) for a, d in zip(args, in_dims, strict=True)
            ]
            results.append(op(*sample))
        stacked = tuple(torch.stack(r) for r in zip(*results, strict=True))
        return stacked, (0,) * len(stacked)

    return rule


def _forward_rule(op):
    """vmap of a forward: with unbatched weights and no packing, the vmapped dimension V joins the
    LSTM's own batch (T, B, I) -> (T, V*B, I): rows never interact, so this is exact. Else a loop."""
    loop = _loop_rule(op)

    def rule(info, in_dims, x, h0, c0, *rest):
        batch_sizes = rest[5]
        if batch_sizes is not None or any(d is not None for d in in_dims[3:]):
            return loop(info, in_dims, x, h0, c0, *rest)
        V = info.batch_size
        xd, hd, cd = in_dims[:3]
        x = (x.unsqueeze(0).expand(V, *x.shape) if xd is None else x.movedim(xd, 0)).movedim(0, 1)
        T, _, B, _ = x.shape  # (T, V, B, I)

        def state(s, d):
            if s is None:  # a zero state
                return None
            return (s.expand(V, *s.shape) if d is None else s.movedim(d, 0)).reshape(V * B, -1)

        results = op(x.reshape(T, V * B, -1), state(h0, hd), state(c0, cd), *rest)
        out = [results[0].view(T, V, B, -1), results[1].view(V, B, -1), results[2].view(V, B, -1)]
        out += [t.view(T, V, B, -1) for t in results[3:]]  # the cache (T, V, B, .)
        return tuple(out), (1, 0, 0) + (1,) * (len(results) - 3)

    return rule


torch.library.register_vmap("lstmbyhand::forward", _forward_rule(forward))
torch.library.register_vmap("lstmbyhand::forward_inference", _forward_rule(forward_inference))
torch.library.register_vmap("lstmbyhand::backward", _loop_rule(backward))


# -- the entry point --------------------------------------------------------------------------------


def _autocast(tensors: list[Tensor | None], x: Tensor) -> list[Tensor | None]:
    """nn.LSTM under autocast: float32 inputs and weights run in the autocast dtype."""
    device = x.device.type
    if not torch.is_autocast_enabled(device) or x.dtype != torch.float32:
        return tensors
    dtype = torch.get_autocast_dtype(device)
    return [None if t is None else t.to(dtype) for t in tensors]


def _requires_grad(tensors: list[Tensor | None]) -> bool:
    """Whether a gradient may be asked for (reverse mode). (A plain loop: Dynamo traces this
    bytecode by bytecode.)"""
    if torch.is_grad_enabled():
        for t in tensors:
            if t is not None and t.requires_grad:
                return True
    return False


def _has_tangent(tensors: list[Tensor | None]) -> bool:
    """Whether a tangent is carried (forward mode); none exists outside a `forward_ad.dual_level`
    (which torch.func.jvp enters too)."""
    if forward_ad._current_level < 0:
        return False
    for t in tensors:
        if t is not None and forward_ad.unpack_dual(t).tangent is not None:
            return True
    return False


def _differentiated(tensors: list[Tensor | None]) -> bool:
    """Whether a gradient may be asked for or a tangent is carried: the cache-free
    `forward_inference` would drop either without a word."""
    return _requires_grad(tensors) or _has_tangent(tensors)


def onnx_exporting() -> bool:
    """Whether torch.onnx.export is capturing the model. Asked only while tracing or compiling:
    nn/onnx.py, imported here on first need, imports torch._dynamo (seconds)."""
    if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
        return False
    from lstmbyhand.nn import onnx

    return onnx.exporting()


def lstm_sequence(
    x: Tensor,
    h0: Tensor | None,
    c0: Tensor | None,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
    weight_hr: Tensor | None = None,
    batch_sizes: Tensor | None = None,
    reverse: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """One layer direction with hand-derived BPTT: same arguments and results as `reference_sequence`.

    x (T, B, I), h0 (B, P) or None (zeros), c0 (B, H) or None -> output (T, B, P), h_n (B, P),
    c_n (B, H).
    """
    args = [x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr]
    if x.dtype == torch.float32 and torch.is_autocast_enabled(x.device.type):
        args = _autocast(args, x)
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        from lstmbyhand.nn import onnx  # (imports torch._dynamo: only once capturing)

        if onnx.exporting():  # torch.onnx.export: ONNX's own LSTM operator (nn/onnx.py)
            h0, c0 = _states(x, h0, c0, weight_hh)
            return onnx.lstm_node(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr,
                                  batch_sizes, reverse)  # fmt: skip
        if torch.jit.is_tracing() or torch.compiler.is_exporting() or _differentiated(args):
            # one node in both grad modes (trace's check reruns under no_grad); dynamo cannot
            # trace `Direction`, whose backward is itself a Function
            return torch.ops.lstmbyhand.forward(*args, batch_sizes, reverse)[:3]
        # torch.compile without gradients (it guards on grad mode): no cache, as in eager
        return torch.ops.lstmbyhand.forward_inference(*args, batch_sizes, reverse)
    tangent = _has_tangent(args)
    if not (tangent or _requires_grad(args)):
        return torch.ops.lstmbyhand.forward_inference(*args, batch_sizes, reverse)
    if torch._C._are_functorch_transforms_active():  # what autograd.Function.apply itself checks
        return Direction.apply(*args, batch_sizes, reverse)[:3]
    if tangent:  # forward-mode AD in eager (forward_ad.dual_level), in which `Direction.jvp`'s
        # torch.func.jvp cannot nest: the readable loop, which autograd differentiates both ways
        xs, h, c, w_ih, w_hh, b_ih, b_hh, w_hr = args  # (autocast applied)
        assert xs is not None and w_ih is not None and w_hh is not None
        h, c = _states(xs, h, c, w_hh)
        return reference_sequence(xs, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse)[:3]
    if torch._C._is_torch_function_mode_enabled():  # a mode (FlopCounter, ...) sees the operator
        return torch.ops.lstmbyhand.forward(*args, batch_sizes, reverse)[:3]
    # plain eager autograd: neither the registration's schema re-binding nor Direction.apply's
    # signature binding, a tenth of a millisecond per call each
    return _EagerDirection.apply(*args, batch_sizes, reverse)[:3]
