"""The regularizers' masks (nn/masks.py): the stream is SplitMix64's (its published outputs), the
compiled kernel is bit-equal to the PyTorch-op declaration, a seed of torch's RNG fixes them, and their
statistics: the fraction of ones within a binomial bound, no correlation between steps, between
neighbouring units, between ζ_c and ζ_h, or between two calls."""

from __future__ import annotations

import math

import pytest
import torch

from lstmbyhand.nn import masks, native
from lstmbyhand.nn.variants import CellOptions

U64 = (1 << 64) - 1


def splitmix64(state: int, n: int) -> list[int]:
    """Vigna's splitmix64.c, next() n times from `state`, in Python integers."""
    out = []
    for _ in range(n):
        state = (state + 0x9E3779B97F4A7C15) & U64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & U64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & U64
        out.append(z ^ (z >> 31))
    return out


def test_the_stream_is_splitmix64():
    # the first outputs of splitmix64.c from state 1234567, as published with the algorithm
    published = [6457827717110365317, 3203168211198807973, 9817491932198370423]
    assert splitmix64(1234567, 3) == published
    assert masks.stream_bits(1234567, 0, 3).tolist() == [u >> 32 for u in published]
    for seed in (0, 2**63 + 12345, U64):  # states with the top bit set: the int64 seed's bits
        as_int64 = seed - (1 << 64) if seed >= 1 << 63 else seed
        expected = [u >> 32 for u in splitmix64(seed, 40)]
        assert masks.stream_bits(as_int64, 0, 40).tolist() == expected
        assert masks.stream_bits(as_int64, 17, 23).tolist() == expected[17:]  # counters, no state


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_compiled_masks_are_bit_equal_to_the_declaration(dtype):
    compiled = native.compiled()
    assert compiled is not None, "lstmbyhand.nn._C is not built: run scripts/setup.sh"
    for seed in (0, 7, -1, 2**63 - 1, -(2**63), 0x123456789ABCDEF):
        for offset, shape, p in [
            (0, (1,), 0.3), (5, (37,), 0.1), (1000, (3, 7, 33), 0.5), (3, (17,), 1.0),
            (0, (64,), 0.0), (2**40, (2, 129), 0.75),
        ]:  # fmt: skip
            value = 1 / 0.7
            ours = compiled.keyed_bernoulli(
                list(shape), seed, offset, masks.threshold(p), value, dtype
            )
            reference = masks.keyed_bernoulli_reference(shape, seed, offset, p, value, dtype)
            assert ours.shape == shape and torch.equal(ours, reference), (seed, offset, shape, p)
    # the dispatching function, and a dtype the kernel does not take (converted: the same values)
    for d in (dtype, torch.bfloat16):
        got = masks.keyed_bernoulli((5, 9), 11, 2, 0.4, 2.5, d)
        assert torch.equal(got, masks.keyed_bernoulli_reference((5, 9), 11, 2, 0.4, 2.5, d))


def test_a_seed_of_torch_fixes_the_masks():
    opts = CellOptions.of(recurrent_dropout=0.3, zoneout=(0.2, 0.4))
    like = torch.zeros(())
    torch.manual_seed(9)
    first = opts.masks(like, 6, 4, 5, 3, training=True)
    torch.manual_seed(9)
    again = opts.masks(like, 6, 4, 5, 3, training=True)
    other = opts.masks(like, 6, 4, 5, 3, training=True)
    for a, b, c in zip(first, again, other, strict=True):
        assert torch.equal(a, b) and not torch.equal(a, c)
    with native.python_kernels_only():  # the readable path draws the same masks
        torch.manual_seed(9)
        python = opts.masks(like, 6, 4, 5, 3, training=True)
    for a, b in zip(first, python, strict=True):
        assert torch.equal(a, b)
    m, zc, zh = first
    assert set(m.unique().tolist()) <= {0.0, torch.tensor(1 / 0.7).item()}
    assert set(zc.unique().tolist()) <= {0.0, 1.0} and zh.shape == (6, 4, 3)


def within_binomial(ones: float, n: int, p: float, sigmas: float = 5.0) -> bool:
    return abs(ones - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("p", [0.01, 0.1, 0.5, 0.85])
def test_the_fraction_of_ones_is_binomial(p):
    T, B, H = 200, 16, 64
    opts = CellOptions.of(zoneout=(p, p))
    torch.manual_seed(0)
    for _ in range(3):
        _, zc, zh = opts.masks(torch.zeros(()), T, B, H, H, training=True)
        for z in (zc, zh):
            assert within_binomial(z.sum().item(), z.numel(), p), z.mean().item()
            per_step = z.mean(dim=(1, 2))  # (T,) each step's fraction, B H entries each
            assert (per_step - p).abs().max() <= 6 * math.sqrt(p * (1 - p) / (B * H))


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return (a @ b / (a.norm() * b.norm())).item()


def test_the_masks_are_uncorrelated_across_steps_units_masks_and_calls():
    T, B, H = 100, 32, 64
    opts = CellOptions.of(zoneout=(0.3, 0.3))
    torch.manual_seed(1)
    _, zc, zh = opts.masks(torch.zeros(()), T, B, H, H, training=True)
    _, zc2, _ = opts.masks(torch.zeros(()), T, B, H, H, training=True)
    # for independent entries the sample correlation of n pairs has standard deviation ~ 1/sqrt(n)
    pairs = {
        "step t, t+1": (zc[1:], zc[:-1]),
        "unit k, k+1": (zc[..., 1:], zc[..., :-1]),
        "row j, j+1": (zc[:, 1:], zc[:, :-1]),
        "zeta_c, zeta_h": (zc, zh),
        "two calls": (zc, zc2),
    }
    for name, (a, b) in pairs.items():
        assert abs(correlation(a, b)) < 5 / math.sqrt(a.numel()), name
    # the bits themselves: each of the 32 bits set half the time, 16 equal bins of u filled evenly
    bits = masks.stream_bits(12345, 0, 1 << 16)
    for k in range(32):
        assert within_binomial(((bits >> k) & 1).sum().item(), bits.numel(), 0.5), k
    counts = torch.bincount(bits >> 28, minlength=16).double()
    chi2 = ((counts - counts.mean()) ** 2 / counts.mean()).sum().item()
    assert chi2 < 45  # 15 degrees of freedom: P(chi2 > 45) < 1e-4


def test_a_traced_model_draws_new_masks_every_call_as_eager_does():
    # under jit.trace the seed stays a tensor (masks.draw_seed), so the draw is in the graph: the
    # traced model's masks are eager's under the same seed, and differ from call to call (a seed
    # turned into a Python number would be baked into the trace: the same masks at every call)
    from lstmbyhand import LSTM

    torch.manual_seed(0)
    model = LSTM(3, 5, zoneout=(0.3, 0.3), recurrent_dropout=0.2).train()
    x = torch.randn(6, 2, 3)
    traced = torch.jit.trace(model, (x,), check_trace=False)
    for seed in (1, 2):
        torch.manual_seed(seed)
        eager, _ = model(x)
        torch.manual_seed(seed)
        from_trace, _ = traced(x)
        torch.testing.assert_close(from_trace, eager, rtol=1e-6, atol=1e-7)
    first, _ = traced(x)
    second, _ = traced(x)
    assert not torch.equal(first, second)


def test_a_compiled_model_draws_its_masks_in_the_graph():
    # fullgraph: no graph break for the seed; the masks are torch's RNG inside the graph, new at
    # every call, with the declared statistics (a zoneout of 1 keeps every state: output == h0 = 0)
    from lstmbyhand import LSTM

    torch.manual_seed(0)
    x = torch.randn(6, 2, 3)
    model = LSTM(3, 5, zoneout=(0.3, 0.3), recurrent_dropout=0.2).train()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    first, _ = compiled(x)
    second, _ = compiled(x)
    assert not torch.equal(first, second)
    frozen = torch.compile(
        LSTM(3, 5, zoneout=(1.0, 1.0)).train(), backend="aot_eager", fullgraph=True
    )
    torch.testing.assert_close(frozen(x)[0], torch.zeros(6, 2, 5), rtol=0, atol=0)
    model.eval()
    torch.testing.assert_close(compiled(x)[0], model(x)[0])
