"""The hand BPTT of a variant cell over a sequence, in PyTorch ops: `variants.cell_forward` and
`variants.cell_backward` looped over time, with the products that need no recurrence done once.

The kernels' arguments (the compiled twins in csrc/ take the same, `kernels_for` picks):

    forward(x, h0, c0, weight_ih, weight_hh, bias, weight_hr, weight_peephole, ln_weight_ih,
            ln_weight_hh, ln_weight_c, ln_bias_c, recurrent_mask, zone_c, zone_h, batch_sizes,
            reverse, flags)
        -> output (T, B, P), h_n (B, P), c_n (B, H), and the cache (CACHE, in order; an entry a
           variant does not use is an empty tensor)
    backward(d_output, d_hn, d_cn, x, weight_ih, weight_hh, weight_hr, weight_peephole,
             ln_weight_ih, ln_weight_hh, ln_weight_c, recurrent_mask, zone_c, zone_h, batch_sizes,
             reverse, flags, *cache)
        -> dx, dh0, dc0, dW_ih, dW_hh, db, dW_hr, d_peephole, d_ln_weight_ih, d_ln_weight_hh,
           d_ln_weight_c, d_ln_bias_c (empty tensors for parameters that are absent)

`flags` is `Variant.flags`; the backward's may add `NO_DX` (x needs no gradient: dx is then an empty
tensor and its product, a third of the backward's GEMM work, is skipped). The masks are `variants.Masks` (None where unused). Rows that do not run
at a step (packed batches) keep their state; their cache rows stay zero, as in bptt.py.
"""

from __future__ import annotations

import functools
import sys
from types import ModuleType

from torch import Tensor

from lstmbyhand.nn import native
from lstmbyhand.nn.bptt import input_products
from lstmbyhand.nn.sequence import active_rows, time_steps
from lstmbyhand.nn.variants import (
    ABLATIONS,
    COUPLED,
    LAYER_NORM,
    NO_FLAG,
    PEEPHOLE,
    Saved,
    Variant,
    VariantWeights,
    cell_backward,
    cell_forward,
    layer_norm_backward,
)

NO_DX = 1 << 16  # backward only: dx is not wanted (above the Variant's own flags)
CACHE = Saved._fields  # gates, h_in, c_prev, c_t, act, xhat_x, rstd_x, xhat_h, rstd_h, chat, rstd_c
LN_ONLY = ("xhat_x", "rstd_x", "xhat_h", "rstd_h", "chat", "rstd_c")


def variant_of(flags: int) -> Variant:
    """The Variant of the kernels' bit flags."""
    ablate = tuple(a for a in ABLATIONS if flags & NO_FLAG[a])
    return Variant(bool(flags & PEEPHOLE), bool(flags & COUPLED), bool(flags & LAYER_NORM), ablate)


def cache_shapes(T: int, B: int, H: int, P: int, layer_norm: bool) -> dict[str, tuple[int, ...]]:
    """The cache's entries and their shapes ((0,) for those a variant does not use)."""
    shapes = {"gates": (T, B, 4 * H), "h_in": (T, B, P), "c_prev": (T, B, H), "c_t": (T, B, H)}
    shapes |= {"act": (T, B, H), "xhat_x": (T, B, 4 * H), "rstd_x": (T, B, 1)}
    shapes |= {"xhat_h": (T, B, 4 * H), "rstd_h": (T, B, 1), "chat": (T, B, H), "rstd_c": (T, B, 1)}
    return {k: (v if layer_norm or k not in LN_ONLY else (0,)) for k, v in shapes.items()}


def _row(mask: Tensor | None, t: int | None, n: int) -> Tensor | None:
    if mask is None:
        return None
    return mask[:n] if t is None else mask[t, :n]


def forward(
    x: Tensor, h0: Tensor, c0: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias: Tensor | None,
    weight_hr: Tensor | None, weight_peephole: Tensor | None, ln_weight_ih: Tensor | None,
    ln_weight_hh: Tensor | None, ln_weight_c: Tensor | None, ln_bias_c: Tensor | None,
    recurrent_mask: Tensor | None, zone_c: Tensor | None, zone_h: Tensor | None,
    batch_sizes: Tensor | None, reverse: bool, flags: int,
) -> tuple[Tensor, ...]:  # fmt: skip
    """F1-F6 of the variant over all steps: output, h_n, c_n and the cache (module docstring)."""
    v = variant_of(flags)
    T, B, _ = x.shape
    H, P = c0.shape[1], h0.shape[1]
    w = VariantWeights(weight_ih, weight_hh, bias, weight_hr, weight_peephole, ln_weight_ih,
                       ln_weight_hh, ln_weight_c, ln_bias_c)  # fmt: skip
    a_x_all = input_products(x, weight_ih, None)  # (T, B, 4H) F1: W x_t for every step
    cache = {k: x.new_zeros(s) for k, s in cache_shapes(T, B, H, P, v.layer_norm).items()}
    output = x.new_zeros(T, B, P)
    h, c = h0.clone(), c0.clone()  # (B, P), (B, H)
    for t in time_steps(T, reverse):
        n = active_rows(batch_sizes, t, B)
        h_t, c_t, saved = cell_forward(
            v, w, a_x_all[t, :n], h[:n], c[:n], _row(recurrent_mask, None, n),
            _row(zone_c, t, n), _row(zone_h, t, n),
        )  # fmt: skip
        for name, value in zip(CACHE, saved, strict=True):
            if value is not None:
                cache[name][t, :n] = value
        h[:n], c[:n] = h_t, c_t
        output[t, :n] = h_t  # F6
    return output, h, c, *cache.values()


def backward(
    d_output: Tensor, d_hn: Tensor, d_cn: Tensor, x: Tensor, weight_ih: Tensor, weight_hh: Tensor,
    weight_hr: Tensor | None, weight_peephole: Tensor | None, ln_weight_ih: Tensor | None,
    ln_weight_hh: Tensor | None, ln_weight_c: Tensor | None, recurrent_mask: Tensor | None,
    zone_c: Tensor | None, zone_h: Tensor | None, batch_sizes: Tensor | None, reverse: bool,
    flags: int, *cache: Tensor,
) -> tuple[Tensor, ...]:  # fmt: skip
    """B6-B1 of the variant over all steps (module docstring for the results)."""
    v = variant_of(flags)
    T, B, _ = x.shape
    H, P = d_cn.shape[1], d_hn.shape[1]
    w = VariantWeights(weight_ih, weight_hh, None, weight_hr, weight_peephole, ln_weight_ih,
                       ln_weight_hh, ln_weight_c, None)  # fmt: skip
    saved_all = Saved._make(None if e.numel() == 0 else e for e in cache)
    dz_all = x.new_zeros(T, B, 4 * H)
    da_h_all = x.new_zeros(T, B, 4 * H) if v.layer_norm else dz_all
    dh_hat_all = x.new_zeros(T, B, P)
    d_peephole = x.new_zeros(3 * H) if v.peephole else x.new_zeros(0)
    d_ln_c = [x.new_zeros(H), x.new_zeros(H)] if v.layer_norm else [x.new_zeros(0)] * 2
    dh, dc = d_hn.clone(), d_cn.clone()  # (B, P), (B, H)
    for t in reversed(time_steps(T, reverse)):
        n = active_rows(batch_sizes, t, B)
        saved = Saved._make(None if e is None else e[t, :n] for e in saved_all)
        dh_t = dh[:n] + d_output[t, :n]  # (n, P) B6
        g = cell_backward(
            v, w, saved, dh_t, dc[:n], _row(recurrent_mask, None, n), _row(zone_c, t, n),
            _row(zone_h, t, n),
        )  # fmt: skip
        dz_all[t, :n] = g.dz
        if v.layer_norm:
            da_h_all[t, :n] = g.da_h
        dh_hat_all[t, :n] = g.dh_hat
        dh[:n], dc[:n] = g.dh_prev, g.dc_prev
        if g.d_peephole is not None:
            d_peephole += g.d_peephole
        if g.d_ln_c is not None:
            d_ln_c[0] += g.d_ln_c[0]
            d_ln_c[1] += g.d_ln_c[1]
    TB = T * B
    dz = dz_all.view(TB, 4 * H)
    da_x = dz  # B1
    d_ln_ih = d_ln_hh = x.new_zeros(0)
    if v.layer_norm:
        assert ln_weight_ih is not None and saved_all.xhat_x is not None
        assert saved_all.rstd_x is not None and saved_all.xhat_h is not None
        xhat_x = saved_all.xhat_x.view(TB, 4 * H)
        da_x = layer_norm_backward(dz * ln_weight_ih, xhat_x, saved_all.rstd_x.view(TB, 1))  # B1
        d_ln_ih = (dz * xhat_x).sum(0)  # B1: dγ_x
        d_ln_hh = (dz * saved_all.xhat_h.view(TB, 4 * H)).sum(0)  # B1: dγ_h
    dx = x.new_zeros(0) if flags & NO_DX else (da_x @ weight_ih).view_as(x)  # (T, B, I) B1
    d_weight_ih = da_x.T @ x.reshape(TB, -1)  # (4H, I) B1
    assert saved_all.h_in is not None
    d_weight_hh = da_h_all.view(TB, 4 * H).T @ saved_all.h_in.view(TB, P)  # (4H, P) B1
    d_bias = dz.sum(0)  # (4H,) B1
    d_weight_hr = x.new_zeros(0)
    if weight_hr is not None:
        assert saved_all.gates is not None and saved_all.act is not None
        r = saved_all.gates[:, :, 3 * H :] * saved_all.act  # (T, B, H) F4 again
        d_weight_hr = dh_hat_all.view(TB, P).T @ r.reshape(TB, H)  # (P, H) B5
    return (
        dx, dh, dc, d_weight_ih, d_weight_hh, d_bias, d_weight_hr, d_peephole, d_ln_ih, d_ln_hh,
        *d_ln_c,
    )  # fmt: skip


def kernels_for(x: Tensor) -> ModuleType:
    """The compiled variant kernels on CPU when built (native exposes variant_forward and
    variant_backward), else this module's PyTorch ops (CUDA included: no Triton variant kernels)."""
    compiled = native.compiled()
    if x.device.type == "cpu" and compiled is not None and hasattr(compiled, "variant_forward"):
        return _compiled_for(compiled)  # type: ignore[return-value]
    return sys.modules[__name__]


@functools.cache
def _compiled_for(module: ModuleType) -> _Compiled:
    """One wrapper per extension module (made once: kernels_for runs at every call)."""
    return _Compiled(module)


class _Compiled:
    """The compiled extension's variant kernels under this module's names (its backward takes the
    cache as one list)."""

    def __init__(self, module: ModuleType) -> None:
        self.forward = module.variant_forward
        self._backward = module.variant_backward

    def backward(self, *args):
        return self._backward(*args[:17], list(args[17:]))
