"""Backpropagation through time, derived by hand, for one direction of one LSTM layer.

Forward, at each step t (stacked gate order i, f, g, o; see `gates.py`):

    (F1) z_t  = W x_t + U h_{t-1} + b                      (B, 4H) pre-activations
    (F2) i, f, o = σ(z_i), σ(z_f), σ(z_o);  g = tanh(z_g)
    (F3) c_t  = f ⊙ c_{t-1} + i ⊙ g
    (F4) r_t  = o ⊙ tanh(c_t)
    (F5) h_t  = r_t  (or W_hr r_t with a projection)
    (F6) y_t  = h_t                                         the layer's output at step t

Backward, visiting the steps in the opposite order, with dh and dc the gradients flowing into step t
from later steps (starting from dL/dh_n and dL/dc_n):

    (B6) dh_t  = dh + dL/dy_t                               ∂ of F6 plus the recurrent path
    (B5) dr    = dh_t  (or dh_t W_hr);  dW_hr += dh_tᵀ r_t  ∂ of F5
    (B4) do    = dr ⊙ tanh(c_t);  dc_t = dc + dr ⊙ o ⊙ (1 - tanh²(c_t))      ∂ of F4
    (B3) df    = dc_t ⊙ c_{t-1};  di = dc_t ⊙ g;  dg = dc_t ⊙ i;  dc ← dc_t ⊙ f   ∂ of F3
    (B2) dz_i  = di ⊙ i(1-i);  dz_f = df ⊙ f(1-f);  dz_o = do ⊙ o(1-o);  dz_g = dg ⊙ (1-g²)   ∂ of F2
    (B1) dh    ← dz U;  and over all steps at once:                         ∂ of F1
         dx = dz W,  dW = Σ_t dz_tᵀ x_t,  dU = Σ_t dz_tᵀ h_{t-1},  db = Σ_t Σ_batch dz_t

The input product W x_t of every step is one GEMM before the loop, and the three weight gradients are
one GEMM each after it: only U h_{t-1} and dz U run step by step. Rows that are not running at a step
(packed batches: see `sequence.py`) are skipped: their state and its gradient pass through unchanged.

`ops.py` registers forward, forward_inference and backward as PyTorch operators, running the kernels
`kernels_for` picks: the compiled twin in `csrc/` (same equations, same arguments) on CPU when it is
built, the Triton kernels of `triton/` on CUDA when they can run, and these PyTorch ops everywhere
else (they are the reference the other two are tested against).

Second and higher derivatives (create_graph=True) are not derived by hand: the backward of the
backward differentiates the readable loop (`sequence.reference_sequence`) twice with autograd
(`ops.DirectionBackward`). A hand second derivative would add a second-order cache and about forty
more lines of chain rule per step for what is rarely on a hot path (gradient penalties, Hessian-vector
products); the recompute costs one more forward and backward through autograd and is exact for every
configuration (projection, packed, reverse, no bias), because it differentiates the specification.
"""

from __future__ import annotations

import sys
from types import ModuleType

import torch
from torch import Tensor

from lstmbyhand.nn import native
from lstmbyhand.nn.sequence import active_rows, time_steps


def _cell(z: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """F2-F4 of one step: pre-activations z (n, 4H), c_{t-1} (n, H) -> activated gates (n, 4H), c_t,
    tanh(c_t), r_t. Six element-wise kernels and a copy (on a GPU each is a launch: keep them few)."""
    H = c.shape[1]
    act = torch.sigmoid(z)  # F2: i, f, o (g's columns are overwritten next)
    act[:, 2 * H : 3 * H] = torch.tanh(z[:, 2 * H : 3 * H])  # F2: g
    i, f, g, o = act.chunk(4, dim=1)  # each (n, H)
    c_t = torch.addcmul(f * c, i, g)  # (n, H) F3
    tanh_c = torch.tanh(c_t)
    return act, c_t, tanh_c, o * tanh_c  # F4: r_t = o ⊙ tanh(c_t)


def input_products(x: Tensor, weight_ih: Tensor, bias: Tensor | None) -> Tensor:
    """F1's input part for every step at once: x (T, B, I) -> W x_t + b (T, B, 4H), one GEMM."""
    T, B, _ = x.shape
    xw = x.reshape(T * B, -1) @ weight_ih.T  # (T*B, 4H)
    if bias is not None:
        xw += bias
    return xw.view(T, B, -1)


def forward(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias: Tensor | None,
    weight_hr: Tensor | None,
    batch_sizes: Tensor | None,
    reverse: bool,
) -> tuple[Tensor, ...]:
    """F1-F6 over all steps. x (T, B, I), h0 (B, P), c0 (B, H), bias = b_ih + b_hh (4H,) or None.

    Returns output (T, B, P), h_n (B, P), c_n (B, H) and the cache the backward needs:
    gates (T, B, 4H) activated i, f, g, o; h_prev (T, B, P); c_prev (T, B, H); tanh_c (T, B, H).
    """
    T, B, _ = x.shape
    H, P = c0.shape[1], h0.shape[1]
    xw = input_products(x, weight_ih, bias)  # (T, B, 4H)
    output = x.new_zeros(T, B, P)
    gates = x.new_zeros(T, B, 4 * H)
    h_prev = x.new_zeros(T, B, P)
    c_prev = x.new_zeros(T, B, H)
    tanh_c = x.new_zeros(T, B, H)
    h, c = h0.clone(), c0.clone()  # (B, P), (B, H)
    w_hh_t = weight_hh.T  # (P, 4H)
    for t in time_steps(T, reverse):
        n = active_rows(batch_sizes, t, B)
        h_prev[t, :n] = h[:n]
        c_prev[t, :n] = c[:n]
        z = torch.addmm(xw[t, :n], h[:n], w_hh_t)  # (n, 4H) F1
        gates[t, :n], c_t, tanh_c[t, :n], r = _cell(z, c[:n])  # F2-F4
        h_t = r if weight_hr is None else r @ weight_hr.T  # (n, P) F5
        c[:n] = c_t
        h[:n] = h_t
        output[t, :n] = h_t  # F6
    return output, h, c, gates, h_prev, c_prev, tanh_c


def forward_inference(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias: Tensor | None,
    weight_hr: Tensor | None,
    batch_sizes: Tensor | None,
    reverse: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """`forward` without the cache (no gradient will be asked for): output, h_n, c_n."""
    T, B, _ = x.shape
    P = h0.shape[1]
    xw = input_products(x, weight_ih, bias)  # (T, B, 4H)
    output = x.new_zeros(T, B, P)
    h, c = h0.clone(), c0.clone()  # (B, P), (B, H)
    w_hh_t = weight_hh.T  # (P, 4H)
    for t in time_steps(T, reverse):
        n = active_rows(batch_sizes, t, B)
        z = torch.addmm(xw[t, :n], h[:n], w_hh_t)  # (n, 4H) F1
        _, c[:n], _, r = _cell(z, c[:n])  # F2-F4
        h[:n] = output[t, :n] = r if weight_hr is None else r @ weight_hr.T  # F5, F6
    return output, h, c


def backward(
    d_output: Tensor,
    d_hn: Tensor,
    d_cn: Tensor,
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
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """B6-B1: gradients of x, h0, c0, weight_ih, weight_hh, bias, weight_hr (None without projection)."""
    T, B, _ = x.shape
    H = tanh_c.shape[2]
    dz = x.new_zeros(T, B, 4 * H)
    d_h_all = x.new_zeros(T, B, d_output.shape[2]) if weight_hr is not None else None
    dh, dc = d_hn.clone(), d_cn.clone()  # (B, P), (B, H)
    for t in reversed(time_steps(T, reverse)):
        n = active_rows(batch_sizes, t, B)
        dh_t = dh[:n] + d_output[t, :n]  # (n, P) B6
        if weight_hr is None:
            dr = dh_t  # B5
        else:
            assert d_h_all is not None
            d_h_all[t, :n] = dh_t
            dr = dh_t @ weight_hr  # (n, H) B5
        i, f, g, o = gates[t, :n].chunk(4, dim=1)  # each (n, H)
        tc = tanh_c[t, :n]
        d_o = dr * tc  # B4
        dc_t = dc[:n] + dr * o * (1 - tc * tc)  # B4
        dz_t = dz[t, :n]  # (n, 4H) view
        dz_t[:, :H] = dc_t * g * i * (1 - i)  # B3, B2: input gate
        dz_t[:, H : 2 * H] = dc_t * c_prev[t, :n] * f * (1 - f)  # B3, B2: forget gate
        dz_t[:, 2 * H : 3 * H] = dc_t * i * (1 - g * g)  # B3, B2: candidate
        dz_t[:, 3 * H :] = d_o * o * (1 - o)  # B2: output gate
        dc[:n] = dc_t * f  # B3
        dh[:n] = dz_t @ weight_hh  # (n, P) B1
    dz_flat = dz.view(T * B, 4 * H)
    dx = (dz_flat @ weight_ih).view_as(x)  # (T, B, I) B1
    d_weight_ih = dz_flat.T @ x.reshape(T * B, -1)  # (4H, I) B1
    d_weight_hh = dz_flat.T @ h_prev.view(T * B, -1)  # (4H, P) B1
    d_bias = dz_flat.sum(0)  # (4H,) B1
    d_weight_hr = None
    if weight_hr is not None:
        assert d_h_all is not None
        r = gates[:, :, 3 * H :] * tanh_c  # (T, B, H) F4 again, zero where rows did not run
        d_weight_hr = d_h_all.view(T * B, -1).T @ r.view(T * B, H)  # (P, H) B5
    return dx, dh, dc, d_weight_ih, d_weight_hh, d_bias, d_weight_hr


def _triton() -> ModuleType | None:
    """`lstmbyhand.nn.triton` when it is there and can run, else None (imported on first use)."""
    try:
        from lstmbyhand.nn import triton
    except ImportError:
        return None
    return triton if triton.available() else None


def kernels_for(x: Tensor) -> ModuleType:
    """The kernels for this tensor: compiled C++ on CPU, Triton on CUDA (each when available), else
    this module's PyTorch ops. All three take and return the same arguments and results."""
    compiled = native.compiled()
    if x.device.type == "cpu" and compiled is not None:
        return compiled
    if x.is_cuda and (triton := _triton()) is not None:
        return triton
    return sys.modules[__name__]


def combined_bias(bias_ih: Tensor | None, bias_hh: Tensor | None) -> Tensor | None:
    """b = b_ih + b_hh (4H,), the bias of F1; None without biases."""
    return None if bias_ih is None or bias_hh is None else bias_ih + bias_hh
