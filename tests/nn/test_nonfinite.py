"""NaN and ±inf propagate as in torch.nn.LSTM: on copied weights, one non-finite value in the input,
h0, c0 or one weight gives the same NaN / ±inf pattern in every output and every gradient (finite
elements agree within tolerance), on the compiled kernels and on the PyTorch ops, float32 and
float64, for hidden sizes that leave every remainder of the 16- and 8-wide gate loops (1-17, 31, 33).
The seed's `LSTMbyHand` (whose training runs the compiled `fit_adam`) against its Python loop.
"""

from __future__ import annotations

import math

import pytest
import torch
from helpers import run_with_grads, torch_threads
from torch import nn

from lstmbyhand import LSTMbyHand
from lstmbyhand.nn import native
from lstmbyhand.nn.layers import LSTM

HIDDEN = [*range(1, 18), 31, 33]
VALUES = [math.nan, math.inf, -math.inf]
WHERE = ["input", "h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"]
TOL = {torch.float32: {"atol": 1e-4, "rtol": 1e-3}, torch.float64: {"atol": 1e-9, "rtol": 1e-7}}
T, B, I = 2, 2, 2  # the non-finite input sits at the last step; row 1 must stay clean of row 0's


@pytest.fixture(scope="module", autouse=True)
def compiled_path():
    """The compiled kernels are required; one thread (these shapes never split across threads, and
    idle threads only spin on a loaded machine)."""
    assert native.available(), "the compiled kernels must be built and enabled for these tests"
    with torch_threads(1):
        yield


def assert_same_pattern(ours: torch.Tensor, theirs: torch.Tensor, dtype, what: str) -> None:
    """Same NaN positions, same ±inf positions and signs, finite elements within tolerance."""
    assert torch.equal(ours.isnan(), theirs.isnan()), (
        f"{what}: NaN at {ours.isnan().sum()} elements, nn.LSTM at {theirs.isnan().sum()}"
    )
    assert torch.equal(ours.isposinf(), theirs.isposinf()), f"{what}: +inf pattern differs"
    assert torch.equal(ours.isneginf(), theirs.isneginf()), f"{what}: -inf pattern differs"
    finite = theirs.isfinite()
    torch.testing.assert_close(ours[finite], theirs[finite], **TOL[dtype], msg=what)


def assert_same_patterns(ours, theirs, names, dtype, what: str) -> None:
    """assert_same_pattern over lists of tensors, checked at once and named one by one on failure."""
    a, b = torch.cat([t.flatten() for t in ours]), torch.cat([t.flatten() for t in theirs])
    classes = [torch.isnan, torch.isposinf, torch.isneginf]
    finite = b.isfinite()
    if all(torch.equal(c(a), c(b)) for c in classes) and torch.allclose(
        a[finite], b[finite], **TOL[dtype]
    ):
        return
    for name, x, y in zip(names, ours, theirs, strict=True):
        assert_same_pattern(x, y, dtype, f"{what}: {name}")
    raise AssertionError(f"{what}: patterns differ")  # unreachable when the loop finds it


def poisoned_case(where: str, H: int, value: float, last: bool, dtype, seed: int):
    """nn.LSTM(I, H) (with a projection for weight_hr), inputs, states and output weights, one
    element of `where` set to `value`: in the last unit (the scalar tail or the last vector lane) or
    the first (the first lane) as `last` says; for weights in gate i, f, g or o by H."""
    g = torch.Generator().manual_seed(seed)
    proj = max(1, H // 2) if where == "weight_hr" else 0
    P = proj or H
    torch.manual_seed(seed)
    ref = nn.LSTM(I, H, proj_size=proj, dtype=dtype)
    x = torch.randn(T, B, I, generator=g, dtype=dtype)
    h0 = torch.randn(1, B, P, generator=g, dtype=dtype)
    c0 = torch.randn(1, B, H, generator=g, dtype=dtype)
    unit, col = (H - 1, P - 1) if last else (0, 0)
    row = H % 4 * H + unit  # (4H, ·) rows: gate H % 4, that unit
    with torch.no_grad():
        if where == "input":
            x[T - 1, 0, I - 1] = value
        elif where == "h0":
            h0[0, 0, col] = value
        elif where == "c0":
            c0[0, 0, unit] = value
        elif where in ("weight_ih", "weight_hh"):
            getattr(ref, f"{where}_l0")[row, col if where == "weight_hh" else -1] = value
        elif where in ("bias_ih", "bias_hh"):
            getattr(ref, f"{where}_l0")[row] = value
        else:
            ref.weight_hr_l0[col, unit] = value
    weights = [
        torch.randn(T, B, P, generator=g, dtype=dtype),
        torch.randn(1, B, P, generator=g, dtype=dtype),
        torch.randn(1, B, H, generator=g, dtype=dtype),
    ]
    return ref, x, h0, c0, weights


def run(module, x, h0, c0, weights):
    """output, h_n, c_n and the gradients of Σ result ⊙ weights w.r.t. x, h0, c0 and the weights."""
    leaves = [t.clone().requires_grad_() for t in (x, h0, c0)]
    outputs, grads = run_with_grads(module, [leaves[0]], (leaves[1], leaves[2]), weights)
    return [t.detach() for t in outputs], grads


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("where", WHERE)
def test_nonfinite_pattern_equals_nn_lstm(where, dtype):
    """Every hidden size with one of NaN, +inf, -inf, rotating so that each value meets both the
    16-wide form and the scalar tail (H = 16, 17, 31, 33 take all three) at every location, put in
    the first unit (a first vector lane) or the last (the tail, or the last lane at H = 16) by the
    parity of H: the compiled forward, its backward and the inference forward; the PyTorch ops (no
    vector widths of ours) at three sizes."""
    names = ["output", "h_n", "c_n"]
    for H in HIDDEN if where != "weight_hr" else HIDDEN[1:]:  # a projection needs H > 1
        value = VALUES[(H + WHERE.index(where)) % 3]
        last = (H + WHERE.index(where)) % 2 == 0  # H = 16 and 17 take one each of first, last
        ref, x, h0, c0, weights = poisoned_case(where, H, value, last, dtype, seed=H)
        ours = LSTM.from_torch(ref)
        expected, expected_grads = run(ref, x, h0, c0, weights)
        grad_names = ["d_input", "d_h0", "d_c0"] + [f"d_{n}" for n, _ in ref.named_parameters()]
        case = f"{where} = {value} ({'last' if last else 'first'} unit), H = {H}"
        got, got_grads = run(ours, x, h0, c0, weights)
        assert_same_patterns(
            [*got, *got_grads], [*expected, *expected_grads], names + grad_names, dtype,
            f"compiled, {case}",
        )  # fmt: skip
        with torch.no_grad():  # inference: the forward without the cache
            output, (h_n, c_n) = ours(x, (h0, c0))
        assert_same_patterns([output, h_n, c_n], expected, names, dtype, f"inference, {case}")
        if H in (2, 9, 17):
            with native.python_kernels_only():
                got, got_grads = run(ours, x, h0, c0, weights)
            assert_same_patterns(
                [*got, *got_grads], [*expected, *expected_grads], names + grad_names, dtype,
                f"ops, {case}",
            )  # fmt: skip


def seed_model(hidden: int, output: int | None, dtype) -> LSTMbyHand:
    torch.manual_seed(hidden)
    return LSTMbyHand(input_size=1, hidden_size=hidden, output_size=output, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("hidden, output", [(1, None), (17, 1)])
@pytest.mark.parametrize("value", VALUES, ids=["nan", "inf", "-inf"])
def test_seed_model_nonfinite_data_like_python_loop(hidden, output, value, dtype):
    """A non-finite value in the data: predict and train_model (the compiled fit_adam) give the same
    NaN / inf losses, parameters and predictions as the Python loop."""
    out = output or hidden
    x = torch.tensor([[0.0, 0.5, 0.25, 1.0], [1.0, 0.5, 0.25, 1.0]], dtype=dtype)
    y = torch.rand(2, out, generator=torch.Generator().manual_seed(0), dtype=dtype)
    x_bad = x.clone()
    x_bad[1, 2] = value
    y_bad = y.clone()
    y_bad[0, 0] = value
    for data, targets in ((x_bad, y), (x, y_bad)):
        batches = [(data[:1], targets[:1]), (data[1:], targets[1:])]
        results = []
        for compiled in (True, False):
            model = seed_model(hidden, output, dtype)
            if compiled:
                losses = model.train_model(batches, max_epoch=2, lr=0.01, tol=None)
                prediction = model.predict(data)
            else:
                with native.python_kernels_only():
                    losses = model.train_model(batches, max_epoch=2, lr=0.01, tol=None)
                    prediction = model.predict(data)
            params = torch.cat([p.detach().flatten() for p in model.parameters()])
            results.append([torch.tensor(losses, dtype=torch.float64), params, prediction])
        for name, a, b in zip(["losses", "parameters", "prediction"], *results, strict=True):
            assert_same_pattern(a, b, dtype, f"{value} in the data: {name}")
    assert results[0][0].isnan().any()  # the last pair (a non-finite target) gives a NaN loss


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("hidden", [1, 16, 20])
def test_seed_predict_nan_input_like_nn_lstm(hidden, dtype):
    """predict on data with a NaN (the compiled forward) against nn.LSTM on the same weights."""
    model = seed_model(hidden, None, dtype)
    x = torch.tensor([[0.0, 0.5, math.nan, 1.0], [1.0, 0.5, 0.25, 1.0]], dtype=dtype)
    ref = model.lstm.to_torch()
    with torch.no_grad():
        expected = ref(x.reshape(2, 4, 1))[1][0][-1]
    assert expected.isnan().any()
    assert_same_pattern(model.predict(x), expected, dtype, "predict")
