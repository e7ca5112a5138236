"""The Triton kernels (`lstmbyhand.nn.triton`) against torch.nn.LSTM on copied weights, on CPU.

The kernels run in Triton's interpreter, which needs TRITON_INTERPRET=1 before triton is first
imported (triton decorates its own library functions then). So that no other test in this pytest
process sees that variable, or an interpreter-decorated triton, every check runs in ONE child process
(this file run as a script, with the variable set); each test below reports one check's result.

One layer direction at a time: the reverse direction is nn.LSTM's with bidirectional=True. Packed
cases build nn.LSTM's input with pack_padded_sequence. Gradients are torch.autograd.grad of
(out * d_output).sum() + (h_n * d_hn).sum() + (c_n * d_cn).sum() through nn.LSTM.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import traceback

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

if importlib.util.find_spec("triton") is None:  # not imported here: see the docstring
    pytest.skip(
        "triton is not installed (the gpu extra: pip install triton)", allow_module_level=True
    )

TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


def _reference(T, B, I, H, proj_size, bias, reverse, batch_sizes, dtype):
    """nn.LSTM's results for one direction, the inputs, weights and random output gradients, and the
    gradients of the loss above with respect to x, h0, c0, weight_ih, weight_hh, bias_ih, weight_hr."""
    torch.manual_seed(0)
    lstm = nn.LSTM(I, H, bias=bias, proj_size=proj_size, bidirectional=reverse, dtype=dtype)
    d, suffix = (1, "_reverse") if reverse else (0, "")
    P = proj_size or H
    w = {n: getattr(lstm, f"{n}_l0{suffix}", None) for n in ("weight_ih", "weight_hh", "bias_ih")}
    w["bias_hh"] = getattr(lstm, f"bias_hh_l0{suffix}", None)
    w["weight_hr"] = getattr(lstm, f"weight_hr_l0{suffix}", None)
    x = torch.randn(T, B, I, dtype=dtype, requires_grad=True)
    h0 = torch.randn(1 + reverse, B, P, dtype=dtype, requires_grad=True)
    c0 = torch.randn(1 + reverse, B, H, dtype=dtype, requires_grad=True)
    if batch_sizes is None:
        out, (h_n, c_n) = lstm(x, (h0, c0))  # (T, B, D*P)
    else:
        lengths = [int((batch_sizes > b).sum()) for b in range(B)]
        packed, (h_n, c_n) = lstm(pack_padded_sequence(x, lengths), (h0, c0))
        out, _ = pad_packed_sequence(packed, total_length=T)  # zeros past each length
    out = out[:, :, d * P : (d + 1) * P]  # (T, B, P) this direction's half
    d_out = torch.randn(T, B, P, dtype=dtype)
    d_hn, d_cn = torch.randn(B, P, dtype=dtype), torch.randn(B, H, dtype=dtype)
    loss = (out * d_out).sum() + (h_n[d] * d_hn).sum() + (c_n[d] * d_cn).sum()
    wrt = {"x": x, "h0": h0, "c0": c0, "weight_ih": w["weight_ih"], "weight_hh": w["weight_hh"]}
    if bias:
        wrt["bias"] = w["bias_ih"]  # its gradient is also bias_hh's
    if proj_size:
        wrt["weight_hr"] = w["weight_hr"]
    grads = dict(zip(wrt, torch.autograd.grad(loss, list(wrt.values())), strict=True))
    grads["h0"], grads["c0"] = grads["h0"][d], grads["c0"][d]
    inputs = {
        "x": x.detach(),
        "h0": h0[d].detach(),
        "c0": c0[d].detach(),
        "weight_ih": w["weight_ih"].detach(),
        "weight_hh": w["weight_hh"].detach(),
        "bias": (w["bias_ih"] + w["bias_hh"]).detach() if bias else None,
        "weight_hr": None if w["weight_hr"] is None else w["weight_hr"].detach(),
        "batch_sizes": batch_sizes,
        "reverse": reverse,
    }
    expected = (out.detach(), h_n[d].detach(), c_n[d].detach())
    return inputs, expected, (d_out, d_hn, d_cn), grads


def _check(kernels, T, B, I, H, proj_size, bias, reverse, batch_sizes, dtype, tol):
    """forward, forward_inference and backward against nn.LSTM; returns the largest error seen."""
    bs = None if batch_sizes is None else torch.tensor(batch_sizes, dtype=torch.int64)
    inputs, expected, (d_out, d_hn, d_cn), grads = _reference(
        T, B, I, H, proj_size, bias, reverse, bs, dtype
    )
    output, h_n, c_n, *cache = kernels.forward(**inputs)
    worst = 0.0
    for name, ours, theirs in zip(
        ("output", "h_n", "c_n"), (output, h_n, c_n), expected, strict=True
    ):
        torch.testing.assert_close(
            ours, theirs, atol=tol, rtol=tol, msg=lambda m, n=name: f"{n}: {m}"
        )
        worst = max(worst, (ours - theirs).abs().max().item())
    for ours, theirs in zip(kernels.forward_inference(**inputs), (output, h_n, c_n), strict=True):
        assert torch.equal(ours, theirs)  # the same kernel, without the cache stores
    keep = ("x", "weight_ih", "weight_hh", "weight_hr", "batch_sizes", "reverse")
    dx, dh0, dc0, dw_ih, dw_hh, d_bias, dw_hr = kernels.backward(
        d_out, d_hn, d_cn, **{k: inputs[k] for k in keep}, gates=cache[0], h_prev=cache[1],
        c_prev=cache[2], tanh_c=cache[3],
    )  # fmt: skip
    ours = {"x": dx, "h0": dh0, "c0": dc0, "weight_ih": dw_ih, "weight_hh": dw_hh}
    if bias:
        ours["bias"] = d_bias
    if proj_size:
        ours["weight_hr"] = dw_hr
    else:
        assert dw_hr is None
    for name, theirs in grads.items():
        torch.testing.assert_close(
            ours[name], theirs, atol=tol, rtol=tol, msg=lambda m, n=name: f"d {n}: {m}"
        )
        worst = max(worst, (ours[name] - theirs).abs().max().item())
    return worst


CASES = {  # T, B, I, H, proj_size, bias, reverse, batch_sizes
    "plain": (4, 3, 3, 5, 0, True, False, None),
    "no_bias_reverse": (5, 2, 2, 3, 0, False, True, None),
    "packed_reverse": (4, 3, 2, 4, 0, True, True, [3, 2, 2, 1]),
    "projection_packed": (4, 3, 3, 5, 3, True, False, [3, 2, 2, 1]),
    "projection_packed_reverse_no_bias": (4, 3, 2, 5, 2, False, True, [3, 3, 1, 1]),
}


def _several_blocks(kernels, proj_size, reverse, batch_sizes):
    """16-wide tiles and B = 18, H = 20, P = 20 or 17: two blocks of rows, of gate columns and of P,
    so the masks at every tile edge and the loops over K are exercised."""
    saved = kernels.MAX_BLOCK_B, kernels.MAX_BLOCK_H, kernels.MAX_BLOCK_P
    kernels.MAX_BLOCK_B = kernels.MAX_BLOCK_H = kernels.MAX_BLOCK_P = 16
    try:
        return _check(
            kernels, 3, 18, 2, 20, proj_size, True, reverse, batch_sizes, torch.float64, 1e-10
        )
    finally:
        kernels.MAX_BLOCK_B, kernels.MAX_BLOCK_H, kernels.MAX_BLOCK_P = saved


def _float16(kernels):
    """float16 inputs, float32 arithmetic: close to nn.LSTM in float64 at float16's precision."""
    inputs, expected, (d_out, d_hn, d_cn), grads = _reference(
        4, 3, 3, 5, 0, True, False, None, torch.float64
    )
    half = {k: v.half() if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    output, h_n, c_n, *cache = kernels.forward(**half)
    assert output.dtype == c_n.dtype == cache[0].dtype == torch.float16
    worst = 0.0
    for ours, theirs in zip((output, h_n, c_n), expected, strict=True):
        torch.testing.assert_close(ours.double(), theirs, atol=5e-3, rtol=5e-3)
        worst = max(worst, (ours.double() - theirs).abs().max().item())
    dx, dh0, dc0, dw_ih, dw_hh, d_bias, _ = kernels.backward(
        d_out.half(), d_hn.half(), d_cn.half(), half["x"], half["weight_ih"], half["weight_hh"],
        None, None, False, *cache,
    )  # fmt: skip
    for name, ours in zip(grads, (dx, dh0, dc0, dw_ih, dw_hh, d_bias), strict=True):
        torch.testing.assert_close(ours.double(), grads[name], atol=2e-2, rtol=2e-2)
        worst = max(worst, (ours.double() - grads[name]).abs().max().item())
    return worst


def _dtype_error(kernels):
    x = torch.zeros(2, 1, 1, dtype=torch.int32)
    with pytest.raises(TypeError, match="expected float64, float32, float16 or bfloat16"):
        kernels.forward(x, x[0], x[0], x[0], x[0], None, None, None, False)


def _available(kernels):
    import lstmbyhand.nn.triton as lstm_triton

    assert lstm_triton.available()  # TRITON_INTERPRET=1 in this process
    assert lstm_triton.forward is kernels.forward  # the package's names are the kernel module's


CHECKS = {  # name -> a function of the kernel module; run in the child process
    **{
        f"torch_lstm-{case}-{name}": (
            lambda k, case=case, dtype=dtype: _check(k, *CASES[case], dtype, TOLERANCE[dtype])
        )
        for case in CASES
        for dtype, name in ((torch.float64, "float64"), (torch.float32, "float32"))
    },
    "several_blocks-packed": lambda k: _several_blocks(k, 0, False, [18, 17, 3]),
    "several_blocks-projection_packed_reverse": lambda k: _several_blocks(k, 17, True, [18, 9, 9]),
    "float16": _float16,
    "dtype_error": _dtype_error,
    "available": _available,
}


def _child_main() -> None:
    """Run every check with the kernels in Triton's interpreter; print {name: [error, worst]} as JSON."""
    assert os.environ.get("TRITON_INTERPRET") == "1"
    from lstmbyhand.nn.triton import kernels

    assert kernels.INTERPRETED
    results = {}
    for name, check in CHECKS.items():
        try:
            results[name] = [None, check(kernels)]
        except Exception:
            results[name] = [traceback.format_exc(), None]
    print(json.dumps(results))


@pytest.fixture(scope="module")
def interpreted():
    """The results of every check, from one child process running this file under the interpreter."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run(
        [sys.executable, __file__], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", list(CHECKS))
def test_interpreted(interpreted, name):
    error, _worst = interpreted[name]
    assert error is None, error


if __name__ == "__main__":
    _child_main()
