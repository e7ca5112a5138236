"""Fused LSTM step kernels in Triton: `forward`, `forward_inference`, `backward` of `bptt.py`'s contract.

The equations are `bptt.py`'s (F1-F6 forward, B6-B1 backward, gate order i, f, g, o). What runs where:

    before the loop   W x_t + b for every step: one torch GEMM                       F1, input part
    each step         `_forward_step`: U h_{t-1} + (W x_t + b), gates, c_t, r_t      F1 recurrent part, F2-F4
                      (one launch; without a projection it also writes h_t and y_t: F5, F6)
                      with a projection, h_t = r_t W_hrᵀ is a torch matmul            F5
    each step back    `_backward_step`: dh_t, dr, dc_t, dz_t, dc ← dc_t ⊙ f, dh ← dz_t U   B6-B2, B1's dz U
                      (one launch; with a projection, dr = dh_t W_hr is a torch matmul before it: B5)
    after the loop    dx, dW, dU, db, dW_hr: one torch GEMM each                      B1, B5

`_forward_step` runs on a grid of (row blocks, H-column blocks): a program owns BLOCK_H columns of each
of the four gates for BLOCK_B rows, so it holds everything F2-F4 need for those columns. It reads all of
h_{t-1} (the product's K dimension, in BLOCK_P chunks), so h_t goes to a second buffer (the two swap
each step) instead of overwriting h_{t-1} while another program still reads it; c_t overwrites c_{t-1}
in place (each element is read and written by the same program). `_backward_step` runs on a grid of
(row blocks, P-column blocks) of dh ← dz_t U; each program computes dz_t for its rows chunk by chunk
over H (the product's K dimension) and feeds it to the product; the programs of the first P block also
store dz_t and dc_t ⊙ f. dh and dc swap between two buffers for the same reason as h.

Packed batches: at step t only the first n = batch_sizes[t] rows run. The kernels take n; the other
rows keep their state (copied into the swapped buffer), and their outputs, cache rows and dz stay zero.

float32 and float64 compute in their own precision (tl.dot with input_precision="ieee": no TF32);
float16 and bfloat16 feed tl.dot as they are and accumulate, and do the gate arithmetic, in float32;
every buffer keeps the input's dtype, as in `bptt.py`.

The kernels are decorated when this module is imported: under TRITON_INTERPRET=1 they run on CPU
tensors through Triton's interpreter (that is how the tests check them); otherwise they need CUDA tensors.
All tensors the kernels see are made contiguous first, so a row's stride is its width.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from lstmbyhand.nn.bptt import input_products
from lstmbyhand.nn.sequence import active_rows, time_steps

INTERPRETED = bool(triton.knobs.runtime.interpret)  # fixed when the kernels below are decorated

# Largest tile edges; each is lowered to the next power of two of the dimension (tl.dot needs >= 16).
MAX_BLOCK_B = 16
MAX_BLOCK_H = 32
MAX_BLOCK_P = 32

_ACCUMULATE = {  # the dtype of the gate arithmetic and of tl.dot's accumulator, per input dtype
    torch.float64: tl.float64,
    torch.float32: tl.float32,
    torch.float16: tl.float32,
    torch.bfloat16: tl.float32,
}


@triton.jit
def _tanh(x):
    """tanh from exp (Triton's core has no tanh): sign(x) (1 - e) / (1 + e), e = exp(-2|x|) <= 1."""
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t)


@triton.jit
def _forward_step(
    xw_ptr,  # (B, 4H) W x_t + b of this step
    h_ptr,  # (B, P) h_{t-1}, read only
    c_ptr,  # (B, H) c_{t-1}, overwritten with c_t in the running rows
    u_ptr,  # (4H, P) weight_hh
    h_next_ptr,  # (B, P) h_t (no projection: P == H): r_t in the running rows, h_{t-1} elsewhere
    r_ptr,  # (B, H) r_t of the running rows: y_t's row of the output without a projection
    gates_ptr,  # (B, 4H) cache: activated i, f, g, o
    h_prev_ptr,  # (B, P) cache: h_{t-1} (no projection only; the caller stores it otherwise)
    c_prev_ptr,  # (B, H) cache: c_{t-1}
    tanh_c_ptr,  # (B, H) cache: tanh(c_t)
    n,  # rows running at this step
    B,
    H,
    P,
    PROJ: tl.constexpr,  # a projection follows (the caller computes h_t = r_t W_hrᵀ)
    CACHE: tl.constexpr,  # store the backward's cache
    ACC: tl.constexpr,  # dtype of the arithmetic
    BLOCK_B: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)  # (BB,)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)  # (BH,) columns within each gate
    run = rows < n  # rows that take this step
    col_ok = cols < H
    m_run = run[:, None] & col_ok[None, :]  # (BB, BH)
    m_all = (rows < B)[:, None] & col_ok[None, :]  # (BB, BH) every row of the batch

    # F1, recurrent part: U h_{t-1} for the four gates' columns, K = P in chunks
    acc_i = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
    acc_f = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
    acc_g = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
    acc_o = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
    for k0 in range(0, P, BLOCK_P):
        ks = k0 + tl.arange(0, BLOCK_P)  # (BP,)
        k_ok = ks < P
        h = tl.load(
            h_ptr + rows[:, None] * P + ks[None, :], mask=run[:, None] & k_ok[None, :], other=0.0
        )  # (BB, BP)
        u_t = u_ptr + cols[None, :] * P + ks[:, None]  # (BP, BH) U[gate row, k] read transposed
        m_u = k_ok[:, None] & col_ok[None, :]
        acc_i = tl.dot(h, tl.load(u_t, mask=m_u, other=0.0), acc_i, input_precision="ieee")
        acc_f = tl.dot(h, tl.load(u_t + H * P, mask=m_u, other=0.0), acc_f, input_precision="ieee")
        acc_g = tl.dot(
            h, tl.load(u_t + 2 * H * P, mask=m_u, other=0.0), acc_g, input_precision="ieee"
        )
        acc_o = tl.dot(
            h, tl.load(u_t + 3 * H * P, mask=m_u, other=0.0), acc_o, input_precision="ieee"
        )

    xw = xw_ptr + rows[:, None] * 4 * H + cols[None, :]  # (BB, BH) gate i's columns
    z_i = acc_i + tl.load(xw, mask=m_run, other=0.0).to(ACC)  # F1
    z_f = acc_f + tl.load(xw + H, mask=m_run, other=0.0).to(ACC)  # F1
    z_g = acc_g + tl.load(xw + 2 * H, mask=m_run, other=0.0).to(ACC)  # F1
    z_o = acc_o + tl.load(xw + 3 * H, mask=m_run, other=0.0).to(ACC)  # F1
    i = tl.sigmoid(z_i)  # F2
    f = tl.sigmoid(z_f)  # F2
    g = _tanh(z_g)  # F2
    o = tl.sigmoid(z_o)  # F2
    c = c_ptr + rows[:, None] * H + cols[None, :]  # (BB, BH)
    c_old = tl.load(c, mask=m_all, other=0.0)  # c_{t-1}
    c_t = f * c_old.to(ACC) + i * g  # F3
    tanh_c = _tanh(c_t)
    r = o * tanh_c  # F4
    out_ty = c_ptr.dtype.element_ty
    tl.store(c, c_t.to(out_ty), mask=m_run)  # in place: only this program touches these elements
    hc = rows[:, None] * H + cols[None, :]  # (BB, BH) offsets in an (B, H) buffer
    tl.store(r_ptr + hc, r.to(out_ty), mask=m_run)  # r_t (without projection: y_t, F5, F6)
    if CACHE:
        g4 = gates_ptr + rows[:, None] * 4 * H + cols[None, :]  # (BB, BH)
        tl.store(g4, i.to(out_ty), mask=m_run)
        tl.store(g4 + H, f.to(out_ty), mask=m_run)
        tl.store(g4 + 2 * H, g.to(out_ty), mask=m_run)
        tl.store(g4 + 3 * H, o.to(out_ty), mask=m_run)
        tl.store(c_prev_ptr + hc, c_old, mask=m_run)
        tl.store(tanh_c_ptr + hc, tanh_c.to(out_ty), mask=m_run)
    if not PROJ:  # h_t = r_t (F5); P == H, so these columns of h are this program's
        h_old = tl.load(h_ptr + hc, mask=m_all, other=0.0)  # (BB, BH) h_{t-1}
        tl.store(h_next_ptr + hc, tl.where(run[:, None], r.to(out_ty), h_old), mask=m_all)
        if CACHE:
            tl.store(h_prev_ptr + hc, h_old, mask=m_run)


@triton.jit
def _backward_step(
    dh_ptr,  # (B, P) gradient into h_t from later steps, read only
    dout_ptr,  # (B, P) dL/dy_t (no projection: B6 is summed here)
    dr_ptr,  # (B, H) dr of B5 from the caller's matmul (projection only)
    dc_ptr,  # (B, H) gradient into c_t from later steps, read only
    gates_ptr,  # (B, 4H) cache: activated i, f, g, o
    tanh_c_ptr,  # (B, H) cache: tanh(c_t)
    c_prev_ptr,  # (B, H) cache: c_{t-1}
    u_ptr,  # (4H, P) weight_hh
    dz_ptr,  # (B, 4H) out: dz_t of the running rows (the others stay zero)
    dh_next_ptr,  # (B, P) out: dz_t U in the running rows, dh elsewhere
    dc_next_ptr,  # (B, H) out: dc_t ⊙ f in the running rows, dc elsewhere
    n,  # rows running at this step
    B,
    H,
    P,
    PROJ: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)  # (BB,)
    ks = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)  # (BP,) columns of dh
    run = rows < n
    first = (tl.program_id(1) + 0 * rows) == 0  # (BB,) the first block of P also stores dz_t, dc
    every = rows < B
    k_ok = ks < P
    u_ty = u_ptr.dtype.element_ty
    out_ty = dz_ptr.dtype.element_ty

    acc = tl.zeros((BLOCK_B, BLOCK_P), dtype=ACC)  # dz_t U, K = 4H in chunks of each gate
    for c0 in range(0, H, BLOCK_H):
        cols = c0 + tl.arange(0, BLOCK_H)  # (BH,)
        col_ok = cols < H
        m_run = run[:, None] & col_ok[None, :]  # (BB, BH)
        m_all = every[:, None] & col_ok[None, :]
        hc = rows[:, None] * H + cols[None, :]  # (BB, BH) offsets in an (B, H) buffer
        if PROJ:
            dr = tl.load(dr_ptr + hc, mask=m_run, other=0.0).to(ACC)  # B5 (caller: dh_t W_hr)
        else:
            hp = rows[:, None] * P + cols[None, :]  # P == H
            dh_t = tl.load(dh_ptr + hp, mask=m_run, other=0.0).to(ACC) + tl.load(
                dout_ptr + hp, mask=m_run, other=0.0
            ).to(ACC)  # B6
            dr = dh_t  # B5
        g4 = gates_ptr + rows[:, None] * 4 * H + cols[None, :]  # (BB, BH)
        i = tl.load(g4, mask=m_run, other=0.0).to(ACC)
        f = tl.load(g4 + H, mask=m_run, other=0.0).to(ACC)
        g = tl.load(g4 + 2 * H, mask=m_run, other=0.0).to(ACC)
        o = tl.load(g4 + 3 * H, mask=m_run, other=0.0).to(ACC)
        tc = tl.load(tanh_c_ptr + hc, mask=m_run, other=0.0).to(ACC)
        c_prev = tl.load(c_prev_ptr + hc, mask=m_run, other=0.0).to(ACC)
        dc = tl.load(dc_ptr + hc, mask=m_all, other=0.0)  # (BB, BH)
        d_o = dr * tc  # B4
        dc_t = dc.to(ACC) + dr * o * (1.0 - tc * tc)  # B4
        dz_i = dc_t * g * i * (1.0 - i)  # B3, B2: input gate
        dz_f = dc_t * c_prev * f * (1.0 - f)  # B3, B2: forget gate
        dz_g = dc_t * i * (1.0 - g * g)  # B3, B2: candidate
        dz_o = d_o * o * (1.0 - o)  # B2: output gate
        dz = dz_ptr + rows[:, None] * 4 * H + cols[None, :]  # (BB, BH)
        m_dz = m_run & first[:, None]  # stored once, by the first block of P
        tl.store(dz, dz_i.to(out_ty), mask=m_dz)
        tl.store(dz + H, dz_f.to(out_ty), mask=m_dz)
        tl.store(dz + 2 * H, dz_g.to(out_ty), mask=m_dz)
        tl.store(dz + 3 * H, dz_o.to(out_ty), mask=m_dz)
        dc_next = tl.where(run[:, None], (dc_t * f).to(out_ty), dc)  # B3: dc ← dc_t ⊙ f
        tl.store(dc_next_ptr + hc, dc_next, mask=m_all & first[:, None])
        # B1: dh ← dz_t U, this chunk of each gate's rows of U: (BH, BP)
        u = u_ptr + cols[:, None] * P + ks[None, :]
        m_u = col_ok[:, None] & k_ok[None, :]
        acc = tl.dot(dz_i.to(u_ty), tl.load(u, mask=m_u, other=0.0), acc, input_precision="ieee")
        acc = tl.dot(
            dz_f.to(u_ty), tl.load(u + H * P, mask=m_u, other=0.0), acc, input_precision="ieee"
        )
        acc = tl.dot(
            dz_g.to(u_ty), tl.load(u + 2 * H * P, mask=m_u, other=0.0), acc, input_precision="ieee"
        )
        acc = tl.dot(
            dz_o.to(u_ty), tl.load(u + 3 * H * P, mask=m_u, other=0.0), acc, input_precision="ieee"
        )

    hp = rows[:, None] * P + ks[None, :]  # (BB, BP)
    m_p = every[:, None] & k_ok[None, :]
    dh_old = tl.load(dh_ptr + hp, mask=m_p, other=0.0)
    tl.store(dh_next_ptr + hp, tl.where(run[:, None], acc.to(out_ty), dh_old), mask=m_p)  # B1


def _block(size: int, largest: int) -> int:
    """A tile edge for a dimension: its next power of two, at least 16 (tl.dot), at most `largest`."""
    return max(16, min(largest, triton.next_power_of_2(max(size, 1))))


def _check(x: Tensor) -> tl.dtype:
    """The boundary: a device the kernels can run on and a dtype they handle; returns the arithmetic dtype."""
    if not (x.is_cuda or INTERPRETED):
        raise ValueError(
            "lstmbyhand.nn.triton: expected CUDA tensors (or TRITON_INTERPRET=1 set before this "
            f"module is imported), got a tensor on {x.device}"
        )
    if x.dtype not in _ACCUMULATE:
        raise TypeError(
            "lstmbyhand.nn.triton: expected float64, float32, float16 or bfloat16, got "
            + str(x.dtype)
        )
    return _ACCUMULATE[x.dtype]


def _run_forward(x, h0, c0, weight_ih, weight_hh, bias, weight_hr, batch_sizes, reverse, cache):
    """F1-F6 over all steps; the cache (gates, h_prev, c_prev, tanh_c) only when `cache`."""
    acc = _check(x)
    T, B, _ = x.shape
    H, P = c0.shape[1], h0.shape[1]
    proj = weight_hr is not None
    xw = input_products(x, weight_ih, bias)  # (T, B, 4H) F1, input part: one GEMM
    u = weight_hh.contiguous()  # (4H, P)
    output = x.new_zeros(T, B, P)
    if cache:
        gates = x.new_zeros(T, B, 4 * H)
        h_prev = x.new_zeros(T, B, P)
        c_prev = x.new_zeros(T, B, H)
        tanh_c = x.new_zeros(T, B, H)
    h = h0.clone(memory_format=torch.contiguous_format)  # (B, P)
    h_next = torch.empty_like(h)  # (B, P) the other buffer of h (no projection)
    c = c0.clone(memory_format=torch.contiguous_format)  # (B, H)
    r = x.new_empty(B, H) if proj else None  # (B, H) r_t before the projection
    BB, BH, BP = _block(B, MAX_BLOCK_B), _block(H, MAX_BLOCK_H), _block(P, MAX_BLOCK_P)
    grid = (triton.cdiv(B, BB), triton.cdiv(H, BH))
    for t in time_steps(T, reverse):
        n = active_rows(batch_sizes, t, B)
        step_cache = (gates[t], h_prev[t], c_prev[t], tanh_c[t]) if cache else (xw[t],) * 4
        _forward_step[grid](
            xw[t],
            h,
            c,
            u,
            h_next,
            r if proj else output[t],
            *step_cache,
            n,
            B,
            H,
            P,
            PROJ=proj,
            CACHE=cache,
            ACC=acc,
            BLOCK_B=BB,
            BLOCK_H=BH,
            BLOCK_P=BP,
        )  # F1-F4 (and F5, F6 without a projection)
        if proj:
            h_t = r[:n] @ weight_hr.T  # (n, P) F5
            if cache:
                h_prev[t, :n] = h[:n]
            h[:n] = h_t
            output[t, :n] = h_t  # F6
        else:
            h, h_next = h_next, h
    if cache:
        return output, h, c, gates, h_prev, c_prev, tanh_c
    return output, h, c


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
    return _run_forward(
        x.contiguous(), h0, c0, weight_ih, weight_hh, bias, weight_hr, batch_sizes, reverse, True
    )


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
    return _run_forward(
        x.contiguous(), h0, c0, weight_ih, weight_hh, bias, weight_hr, batch_sizes, reverse, False
    )


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
    acc = _check(x)
    T, B, _ = x.shape
    H, P = tanh_c.shape[2], d_output.shape[2]
    proj = weight_hr is not None
    d_output = d_output.contiguous()  # (T, B, P)
    gates, c_prev, tanh_c = gates.contiguous(), c_prev.contiguous(), tanh_c.contiguous()
    u = weight_hh.contiguous()  # (4H, P)
    dz = x.new_zeros(T, B, 4 * H)
    d_h_all = x.new_zeros(T, B, P) if proj else None  # dh_t of every step, for dW_hr
    dr = x.new_zeros(B, H) if proj else None  # (B, H)
    dh = d_hn.clone(memory_format=torch.contiguous_format)  # (B, P)
    dc = d_cn.clone(memory_format=torch.contiguous_format)  # (B, H)
    dh_next, dc_next = torch.empty_like(dh), torch.empty_like(dc)  # the other buffers
    BB, BH, BP = _block(B, MAX_BLOCK_B), _block(H, MAX_BLOCK_H), _block(P, MAX_BLOCK_P)
    grid = (triton.cdiv(B, BB), triton.cdiv(P, BP))
    for t in reversed(time_steps(T, reverse)):
        n = active_rows(batch_sizes, t, B)
        if proj:
            assert weight_hr is not None and d_h_all is not None and dr is not None
            dh_t = dh[:n] + d_output[t, :n]  # (n, P) B6
            d_h_all[t, :n] = dh_t
            dr[:n] = dh_t @ weight_hr  # (n, H) B5
        _backward_step[grid](
            dh,
            d_output[t],
            dr if proj else dh,
            dc,
            gates[t],
            tanh_c[t],
            c_prev[t],
            u,
            dz[t],
            dh_next,
            dc_next,
            n,
            B,
            H,
            P,
            PROJ=proj,
            ACC=acc,
            BLOCK_B=BB,
            BLOCK_H=BH,
            BLOCK_P=BP,
        )  # B6-B2, B1's dh ← dz_t U
        dh, dh_next = dh_next, dh
        dc, dc_next = dc_next, dc
    dz_flat = dz.view(T * B, 4 * H)
    dx = (dz_flat @ weight_ih).view_as(x)  # (T, B, I) B1
    d_weight_ih = dz_flat.T @ x.reshape(T * B, -1)  # (4H, I) B1
    d_weight_hh = dz_flat.T @ h_prev.reshape(T * B, -1)  # (4H, P) B1
    d_bias = dz_flat.sum(0)  # (4H,) B1
    d_weight_hr = None
    if proj:
        assert d_h_all is not None
        r = gates[:, :, 3 * H :] * tanh_c  # (T, B, H) F4 again, zero where rows did not run
        d_weight_hr = d_h_all.view(T * B, -1).T @ r.reshape(T * B, H)  # (P, H) B5
    return dx, dh, dc, d_weight_ih, d_weight_hh, d_bias, d_weight_hr
