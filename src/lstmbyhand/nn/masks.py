r"""The regularizers' random masks: a counter-based stream (SplitMix64) keyed by one draw of torch's RNG.

A training step needs many mask entries (zoneout: one per step, row and unit, (T, B, H) and (T, B, P)).
Drawing each from torch's generator (`torch.rand(...) < p`) cost more than the variant's kernels at
small sizes (docs/performance.md). Instead, each call of `variants.CellOptions.masks` takes ONE 64-bit
seed from torch's CPU generator (`draw_seed`: `torch.manual_seed` still fixes every mask) and the
k-th entry of the call's stream is

    u_k = mix(seed + (k + 1) γ)  mod 2^64,   γ = 0x9E3779B97F4A7C15 (2^64 / the golden ratio)
    mix(z):  z ← (z ⊕ (z >> 30)) · 0xBF58476D1CE4E5B9
             z ← (z ⊕ (z >> 27)) · 0x94D049BB133111EB
             z ← z ⊕ (z >> 31)

(>> a logical shift, products mod 2^64): SplitMix64 (Steele, Lea & Flood 2014; Vigna's splitmix64.c),
whose k-th output from state `seed` is exactly u_k. A mask entry is

    mask_k = value · [u_k >> 32 < threshold],   threshold = ceil(p · 2^32)

so it is `value` with probability threshold / 2^32 (within 2^-32 of p) and 0 otherwise. The masks of
one call are consecutive stretches of the one stream (`CellOptions.masks`: recurrent, then ζ_c, then
ζ_h), each entry a pure function of (seed, k): no state is carried between entries, so any device
and any order of evaluation give the same bits.

`keyed_bernoulli_reference` is the declaration in PyTorch tensor ops (int64 arithmetic wraps mod 2^64
on every device torch supports; >> on int64 is arithmetic, so the logical shift is a shift and a
mask); `keyed_bernoulli` runs the compiled twin (csrc/masks.cpp) on CPU when built, bit-equal
(tests/nn/test_variant_masks.py), else the reference.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lstmbyhand.nn import native

GAMMA = 0x9E3779B97F4A7C15
MIX = (0xBF58476D1CE4E5B9, 0x94D049BB133111EB)
BITS = 32  # the bits of u_k compared with the threshold (its top 32)


def _int64(value: int) -> int:
    """An unsigned 64-bit constant as the int64 with the same bits."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def _shift_right(z: Tensor, s: int) -> Tensor:
    """z >> s as a logical shift of the 64 bits (int64's >> copies the sign bit)."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def threshold(p: float) -> int:
    """ceil(p 2^32): [u >> 32 < threshold] holds with probability threshold / 2^32, within 2^-32 of p."""
    if not 0 <= p <= 1:
        raise ValueError(f"p: expected a probability in [0, 1], got {p!r}")
    return math.ceil(p * 2.0**BITS)


def draw_seed() -> int | Tensor | None:
    """One 64-bit seed (as an int64) from torch's default CPU generator: the only draw of a call.
    Under `torch.jit.trace` it stays a 0-d tensor, so the draw is part of the graph (a new seed
    every call of the traced model, not the trace's one baked in) and the masks are made by the
    PyTorch-op declaration. Under `torch.compile` it is None and each entry is drawn by torch's RNG
    in the graph (`keyed_bernoulli`): inductor computes int64 index arithmetic without wrapping, so
    the stream cannot be compiled, and a compiled graph's random numbers are inductor's own anyway
    (as for dropout), never eager's."""
    if torch.compiler.is_compiling():
        return None
    seed = torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64)
    return seed if torch.jit.is_tracing() else int(seed.item())


def stream_bits(
    seed: int | Tensor, offset: int, n: int, device: torch.device | str = "cpu"
) -> Tensor:
    """u_k >> 32 for k = offset .. offset + n - 1 (module docstring): (n,) int64 in [0, 2^32)."""
    k = torch.arange(offset + 1, offset + n + 1, dtype=torch.int64, device=device)
    z = k * _int64(GAMMA) + (
        seed.to(device) if isinstance(seed, Tensor) else _int64(seed)
    )  # seed + (k + 1) γ
    z = (z ^ _shift_right(z, 30)) * _int64(MIX[0])
    z = (z ^ _shift_right(z, 27)) * _int64(MIX[1])
    z = z ^ _shift_right(z, 31)
    return _shift_right(z, 64 - BITS)


def keyed_bernoulli_reference(
    shape: tuple[int, ...], seed: int | Tensor, offset: int, p: float, value: float,
    dtype: torch.dtype, device: torch.device | str = "cpu",
) -> Tensor:  # fmt: skip
    """The mask in PyTorch ops: entry k (row-major) = value · [u_{offset+k} >> 32 < threshold(p)]."""
    n = math.prod(shape)
    hit = stream_bits(seed, offset, n, device) < threshold(p)
    return (hit.to(dtype) * value).view(shape)


def keyed_bernoulli(
    shape: tuple[int, ...], seed: int | Tensor | None, offset: int, p: float, value: float,
    dtype: torch.dtype, device: torch.device | str = "cpu",
) -> Tensor:  # fmt: skip
    """`keyed_bernoulli_reference`'s mask, by the compiled kernel on CPU when built (float32 and
    float64; other dtypes get its float32 mask converted, the same values as the reference's); a
    seed that is a tensor (`draw_seed` under tracing) takes the reference; None (under compiling)
    torch's RNG entry by entry."""
    if seed is None:  # under torch.compile (draw_seed): value with probability p, by torch's RNG
        return (torch.rand(shape, device=device) < p).to(dtype) * value
    compiled = native.compiled()
    if isinstance(seed, Tensor) or torch.device(device).type != "cpu" or compiled is None:
        return keyed_bernoulli_reference(shape, seed, offset, p, value, dtype, device)
    kernel_dtype = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    mask = compiled.keyed_bernoulli(list(shape), seed, offset, threshold(p), value, kernel_dtype)
    return mask if kernel_dtype == dtype else mask.to(dtype)
