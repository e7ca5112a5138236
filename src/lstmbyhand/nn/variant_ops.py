"""A variant cell's layer direction as registered PyTorch operators:
`torch.ops.lstmbyhand.{variant_forward, variant_backward}`, with fake kernels and autograd.

The arguments and results are those of `variant_bptt` (its docstring), whose kernels run inside:
the compiled ones on CPU when built, its PyTorch ops elsewhere (CUDA: no Triton kernels for the
variants yet). Half precision on CPU runs in float32 as `ops.py` does. The first derivative is the
hand BPTT (`variant_backward`); asked for a graph of it (create_graph=True), the backward instead
differentiates the readable loop `sequence.variant_sequence` with autograd, so every higher order is
autograd's. The masks are inputs without gradient: drawn once in Python (`variants.CellOptions.masks`), the
same masks reach every path.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lstmbyhand.nn import variant_bptt
from lstmbyhand.nn.ops import _as, _cast, _compute_dtype, _no_autocast, onnx_exporting
from lstmbyhand.nn.sequence import variant_sequence
from lstmbyhand.nn.variants import Masks, Variant, VariantWeights

_LIBRARY = torch.library.Library("lstmbyhand", "FRAGMENT")
N_WEIGHTS = 9  # weight_ih, weight_hh, bias, weight_hr, weight_peephole, ln_* (VariantWeights)


_KERNELS: dict = {}  # operator name -> its Python kernel (what the operator runs, uncalled-through)


def _operator(fn):
    _LIBRARY.define(fn.__name__ + torch.library.infer_schema(fn, mutates_args=()))
    _LIBRARY.impl(fn.__name__, fn, "CompositeExplicitAutograd")
    _KERNELS[fn.__name__] = fn
    return getattr(torch.ops.lstmbyhand, fn.__name__)


@_operator
def variant_forward(
    x: Tensor, h0: Tensor, c0: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias: Tensor | None,
    weight_hr: Tensor | None, weight_peephole: Tensor | None, ln_weight_ih: Tensor | None,
    ln_weight_hh: Tensor | None, ln_weight_c: Tensor | None, ln_bias_c: Tensor | None,
    recurrent_mask: Tensor | None, zone_c: Tensor | None, zone_h: Tensor | None,
    batch_sizes: Tensor | None, reverse: bool, flags: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
           Tensor, Tensor, Tensor]:  # fmt: skip
    """F1-F6 of a variant with the backward's cache: `variant_bptt.forward` on the chosen kernels."""
    dtype = _compute_dtype(x)
    tensors = (x, h0, c0, weight_ih, weight_hh, bias, weight_hr, weight_peephole, ln_weight_ih,
               ln_weight_hh, ln_weight_c, ln_bias_c, recurrent_mask, zone_c, zone_h)  # fmt: skip
    with _no_autocast(x):
        output, h_n, c_n, *cache = variant_bptt.kernels_for(x).forward(
            *(_cast(t, dtype) for t in tensors), batch_sizes, reverse, flags
        )
    return _as(output, x.dtype), _as(h_n, x.dtype), _as(c_n, x.dtype), *cache


@torch.library.register_fake("lstmbyhand::variant_forward")
def _(x, h0, c0, *rest):
    T, B, _ = x.shape
    H, P = c0.shape[1], h0.shape[1]
    shapes = variant_bptt.cache_shapes(T, B, H, P, bool(rest[-1] & variant_bptt.LAYER_NORM))
    dtype = _compute_dtype(x)
    cache = [x.new_empty(s, dtype=dtype) for s in shapes.values()]
    return x.new_empty(T, B, P), x.new_empty(B, P), x.new_empty(B, H), *cache


@_operator
def variant_backward(
    d_output: Tensor, d_hn: Tensor, d_cn: Tensor, x: Tensor, weight_ih: Tensor, weight_hh: Tensor,
    weight_hr: Tensor | None, weight_peephole: Tensor | None, ln_weight_ih: Tensor | None,
    ln_weight_hh: Tensor | None, ln_weight_c: Tensor | None, recurrent_mask: Tensor | None,
    zone_c: Tensor | None, zone_h: Tensor | None, batch_sizes: Tensor | None, reverse: bool,
    flags: int, gates: Tensor, h_in: Tensor, c_prev: Tensor, c_t: Tensor, act: Tensor,
    xhat_x: Tensor, rstd_x: Tensor, xhat_h: Tensor, rstd_h: Tensor, chat: Tensor, rstd_c: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
           Tensor]:  # fmt: skip
    """B6-B1 of a variant on the chosen kernels: dx, dh0, dc0, dW_ih, dW_hh, db, dW_hr, d_peephole,
    d_ln_weight_ih, d_ln_weight_hh, d_ln_weight_c, d_ln_bias_c (empty for absent parameters; dx
    empty when flags has variant_bptt.NO_DX)."""
    dtype = gates.dtype
    tensors = (d_output, d_hn, d_cn, x, weight_ih, weight_hh, weight_hr, weight_peephole,
               ln_weight_ih, ln_weight_hh, ln_weight_c, recurrent_mask, zone_c, zone_h)  # fmt: skip
    cache = (gates, h_in, c_prev, c_t, act, xhat_x, rstd_x, xhat_h, rstd_h, chat, rstd_c)
    with _no_autocast(x):
        grads = variant_bptt.kernels_for(x).backward(
            *(_cast(t, dtype) for t in tensors), batch_sizes, reverse, flags,
            *(t.contiguous() for t in cache),
        )  # fmt: skip
    dtypes = [x.dtype, d_hn.dtype, d_cn.dtype] + [weight_ih.dtype] * 9
    return tuple(_as(g, d) for g, d in zip(grads, dtypes, strict=True))  # type: ignore[return-value]


@torch.library.register_fake("lstmbyhand::variant_backward")
def _(d_output, d_hn, d_cn, x, weight_ih, weight_hh, weight_hr, weight_peephole, *rest):
    H, flags = d_cn.shape[1], rest[8]
    ln = bool(flags & variant_bptt.LAYER_NORM)
    dx = x.new_empty(0) if flags & variant_bptt.NO_DX else x.new_empty(x.shape)

    def vector(n: int, present: bool) -> Tensor:
        return weight_ih.new_empty(n if present else 0)

    return (
        dx, d_hn.new_empty(d_hn.shape), d_cn.new_empty(d_cn.shape),
        weight_ih.new_empty(weight_ih.shape), weight_hh.new_empty(weight_hh.shape),
        weight_ih.new_empty(4 * H),
        weight_ih.new_empty(0) if weight_hr is None else weight_hr.new_empty(weight_hr.shape),
        vector(3 * H, weight_peephole is not None), vector(4 * H, ln), vector(4 * H, ln),
        vector(H, ln), vector(H, ln),
    )  # fmt: skip


# -- autograd -------------------------------------------------------------------------------------

# variant_forward's inputs: x, h0, c0, the nine weights, the three masks, batch_sizes, reverse, flags
_STATE, _MASKS = 3, 3 + N_WEIGHTS


def _setup_context(ctx, inputs, output) -> None:
    cache = output[3:]
    ctx.mark_non_differentiable(*cache)
    # The cache outputs never get a gradient: leave unused ones None instead of zero-filled tensors
    # (autograd would otherwise allocate and zero one per cache output on every backward).
    ctx.set_materialize_grads(False)
    ctx.out_like = [(o.shape, o.dtype, o.device) for o in output[:3]]
    ctx.save_for_backward(*inputs[: _MASKS + 4], *cache)
    ctx.reverse, ctx.flags = inputs[-2], inputs[-1]


def _readable_grads(ctx, primals, masks, batch_sizes, d_outs):
    """The gradients of the readable loop (autograd, with a graph): what double backward differentiates."""
    x, h0, c0, *weights = primals
    w = VariantWeights(*weights)
    v = variant_bptt.variant_of(ctx.flags)
    out = variant_sequence(x, h0, c0, w, v, Masks(*masks), batch_sizes, ctx.reverse)[:3]
    present = [k for k, p in enumerate(primals) if p is not None and p.requires_grad]
    grads = torch.autograd.grad(
        out, [primals[k] for k in present], d_outs, create_graph=True, allow_unused=True
    )
    full: list[Tensor | None] = [None] * len(primals)
    for k, g in zip(present, grads, strict=True):
        full[k] = g
    return full


def _backward(ctx, d_output, d_hn, d_cn, *_cache_grads, direct=False):
    d_output, d_hn, d_cn = (
        torch.zeros(shape, dtype=dtype, device=device) if d is None else d
        for d, (shape, dtype, device) in zip((d_output, d_hn, d_cn), ctx.out_like, strict=True)
    )
    saved = ctx.saved_tensors
    primals, masks = saved[:_MASKS], saved[_MASKS : _MASKS + 3]
    batch_sizes, cache = saved[_MASKS + 3], saved[_MASKS + 4 :]
    if torch.is_grad_enabled():
        full = _readable_grads(ctx, primals, masks, batch_sizes, (d_output, d_hn, d_cn))
    else:
        x, _, _, w_ih, w_hh, _, w_hr, w_p, ln_ih, ln_hh, ln_c, _ = primals
        # an input x without gradient (a first layer's data) skips dx's product
        flags = ctx.flags | (0 if ctx.needs_input_grad[0] else variant_bptt.NO_DX)
        backward = _KERNELS["variant_backward"] if direct else torch.ops.lstmbyhand.variant_backward
        grads = backward(
            d_output, d_hn, d_cn, x, w_ih, w_hh, w_hr, w_p, ln_ih, ln_hh, ln_c, *masks,
            batch_sizes, ctx.reverse, flags, *cache,
        )  # fmt: skip
        full = [None if p is None else g for p, g in zip(primals, grads, strict=True)]
    full = [g if ctx.needs_input_grad[k] else None for k, g in enumerate(full)]
    return *full, None, None, None, None, None, None


torch.library.register_autograd(
    "lstmbyhand::variant_forward", _backward, setup_context=_setup_context
)


class _EagerDirection(torch.autograd.Function):
    """The operator under plain eager autograd, the same forward, setup and backward as its
    registration (`register_autograd` above). The registration's autograd kernel re-binds the
    operator's 18 arguments to its schema on every call (`torch._library.utils.fill_defaults`, which
    reads `schema.arguments` once per argument); this Function, old-style (forward with ctx, so that
    `apply` binds no signature either), calls the operators' Python kernels themselves (`_KERNELS`),
    forward and backward: through the dispatcher each call would pass the autograd key's kernel
    and a redispatch first, for the same function with the same arguments. Used only where nothing
    else looks at the graph (no torch.compile, tracing or torch.func transform)."""

    @staticmethod
    def forward(ctx, *inputs):
        output = _KERNELS["variant_forward"](*inputs)
        _setup_context(ctx, inputs, output)
        return output

    @staticmethod
    def backward(ctx, *grads):
        return _backward(ctx, *grads, direct=True)


def _eager(tensors: tuple) -> bool:
    """Plain eager autograd: a gradient is wanted and no compiler, tracer or transform is active."""
    return (
        torch.is_grad_enabled()
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
        and not torch._C._are_functorch_transforms_active()
        and not torch._C._is_torch_function_mode_enabled()
        and any(t is not None and t.requires_grad for t in tensors)
    )


def variant_lstm_sequence(
    x: Tensor, h0: Tensor, c0: Tensor, weights: VariantWeights, variant: Variant, masks: Masks,
    batch_sizes: Tensor | None = None, reverse: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """One layer direction of a variant with the hand BPTT: the results of `variant_sequence`.

    x (T, B, I), h0 (B, P), c0 (B, H) -> output (T, B, P), h_n (B, P), c_n (B, H).
    """
    if onnx_exporting():
        from lstmbyhand.nn import onnx

        onnx.refuse_variant(variant)
    if torch.is_autocast_enabled(x.device.type) and x.dtype == torch.float32:
        dtype = torch.get_autocast_dtype(x.device.type)
        x, h0, c0 = x.to(dtype), h0.to(dtype), c0.to(dtype)
        weights = VariantWeights._make(None if w is None else w.to(dtype) for w in weights)
    args = (x, h0, c0, *weights, *masks, batch_sizes, reverse, variant.flags)
    if _eager((x, h0, c0, *weights)):
        return _EagerDirection.apply(*args)[:3]
    return torch.ops.lstmbyhand.variant_forward(*args)[:3]
