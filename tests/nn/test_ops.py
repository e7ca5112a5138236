"""The registered operators (`lstmbyhand.nn.ops`) under PyTorch's tools, against torch.nn.LSTM.

torch.jit.trace, torch.export and torch.compile(fullgraph=True) of a model with our LSTM, under
no_grad and with gradients; torch.library.opcheck of each operator; torch.func transforms; batched
gradients; second derivatives (gradgradcheck); half precision and autocast. All in float64 on copied
weights unless the test is about another dtype.
"""

import itertools

import pytest
import torch
from helpers import assert_close_lists
from torch import nn

import lstmbyhand
from lstmbyhand.nn import native, ops
from lstmbyhand.nn.sequence import reference_sequence

pytestmark = pytest.mark.usefixtures("one_thread")

T, B, I, H = 4, 3, 3, 5
KERNELS = ["compiled", "ops"] if native.available() else ["ops"]
F64 = torch.float64


def kernels(which):
    """A context that runs the compiled kernels ("compiled") or bptt.py's PyTorch ops ("ops")."""
    return native.python_kernels_only() if which == "ops" else torch.enable_grad()


class Model(nn.Module):
    """A head over a 2-layer bidirectional LSTM with a projection: every path of the layer runs."""

    def __init__(self, lstm):
        super().__init__()
        self.lstm = lstm
        self.head = nn.Linear(4, 1, dtype=F64)

    def forward(self, x):
        out, (h, c) = self.lstm(x)
        return self.head(out), h, c


def models(seed=0):
    torch.manual_seed(seed)
    ours = Model(lstmbyhand.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=2, dtype=F64))
    theirs = Model(ours.lstm.to_torch())
    theirs.head.load_state_dict(ours.head.state_dict())
    return ours, theirs


def inputs(seed):
    return torch.randn(T, B, I, dtype=F64, generator=torch.Generator().manual_seed(seed))


def outputs_and_grads(fn, model, x):
    x = x.clone().requires_grad_()
    outs = fn(x)
    loss = sum((o * torch.linspace(-1, 1, o.numel(), dtype=F64).view_as(o)).sum() for o in outs)
    return [o.detach() for o in outs], torch.autograd.grad(loss, [x, *model.parameters()])


def assert_matches_nn_lstm(fn, ours, theirs, grad: bool):
    x = inputs(1)  # not the tracing example: a graph that froze values would fail here
    if not grad:
        with torch.no_grad():
            assert_close_lists(fn(x), theirs(x), 1e-12, "no_grad outputs")
        return
    got, got_grads = outputs_and_grads(fn, ours, x)
    want, want_grads = outputs_and_grads(theirs, theirs, x)
    assert_close_lists(got, want, 1e-12, "outputs")
    assert_close_lists(got_grads, want_grads, 1e-11, "gradients")


@pytest.mark.parametrize("which", KERNELS)
def test_jit_trace_under_no_grad_gives_nn_lstms_numbers(which):
    """The reported bug: a trace under no_grad returned garbage (the kernel wrote where the tracer
    could not see). With default settings the trace also runs its own check against eager."""
    ours, theirs = models()
    with kernels(which), torch.no_grad():
        traced = torch.jit.trace(ours, (inputs(0),))
        assert_matches_nn_lstm(traced, ours, theirs, grad=False)
    assert str(traced.inlined_graph).count("lstmbyhand::forward(") == 4  # one per layer direction


@pytest.mark.parametrize("which", KERNELS)
def test_jit_trace_with_grad_gives_nn_lstms_numbers_and_gradients(which):
    ours, theirs = models()
    with kernels(which):
        traced = torch.jit.trace(ours, (inputs(0),))
        assert_matches_nn_lstm(traced, ours, theirs, grad=True)


@pytest.mark.parametrize("grad", [False, True])
def test_export_runs_the_operators_with_nn_lstms_numbers(grad):
    ours, theirs = models()
    with torch.set_grad_enabled(grad):
        program = torch.export.export(ours, (inputs(0),))
    calls = [n for n in program.graph.nodes if n.target is torch.ops.lstmbyhand.forward.default]
    assert len(calls) == 4  # one opaque node per layer and direction, with its autograd formula
    assert_matches_nn_lstm(program.module(), ours, theirs, grad)


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
@pytest.mark.parametrize("grad", [False, True])
def test_compile_fullgraph_gives_nn_lstms_numbers(backend, grad):
    torch._dynamo.reset()
    ours, theirs = models()
    compiled = torch.compile(ours, fullgraph=True, backend=backend)
    assert_matches_nn_lstm(compiled, ours, theirs, grad)


# Inductor's C++ kernels in scalar code, compiled in this process: no probe of the machine's vector
# instruction sets (a compile and a child process each) and no pool of compile workers to start. The
# same graphs and the same lowering of our operators, at about half the compile time on a cold cache.
FAST_INDUCTOR = {"cpp.vec_isa_ok": False, "compile_threads": 1}


def test_compile_with_inductor():
    torch._dynamo.reset()
    ours, theirs = models()
    compiled = torch.compile(ours, fullgraph=True, options=FAST_INDUCTOR)
    assert_matches_nn_lstm(compiled, ours, theirs, grad=True)


# -- the operators themselves -----------------------------------------------------------------------

BATCH_SIZES = torch.tensor([3, 3, 2, 1])  # packed: lengths 4, 3, 2


def op_args(proj, bias, seed=0, dtype=F64, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    P = proj or H

    def rand(*shape):
        return torch.randn(*shape, dtype=dtype, generator=g).requires_grad_(requires_grad)

    return [
        rand(T, B, I),
        rand(B, P),
        rand(B, H),
        rand(4 * H, I),
        rand(4 * H, P),
        rand(4 * H) if bias else None,
        rand(4 * H) if bias else None,
        rand(P, H) if proj else None,
    ]


CASES = list(itertools.product([0, 2], [True, False], [None, BATCH_SIZES], [False, True]))


@pytest.mark.parametrize("which", KERNELS)
@pytest.mark.parametrize("proj,bias,batch_sizes,reverse", CASES[::5])
def test_opcheck_every_operator(which, proj, bias, batch_sizes, reverse):
    """Schema, fake kernels against the real ones, autograd registration, aot dispatch."""
    args = op_args(proj, bias, requires_grad=True)
    zero_state = [args[0], None, None, *args[3:]]  # h0, c0 absent: zeros
    with kernels(which):
        for given in (args, zero_state):
            torch.library.opcheck(ops.forward, (*given, batch_sizes, reverse))
            detached = [a if a is None else a.detach() for a in given]
            torch.library.opcheck(ops.forward_inference, (*detached, batch_sizes, reverse))
        out = ops.forward(*detached, batch_sizes, reverse)
        grads = [torch.randn_like(t) for t in out[:3]]
        x, _, _, w_ih, w_hh, _, _, w_hr = detached
        for need_dx, d_outs in ((True, grads), (False, grads), (True, [grads[0], None, None])):
            torch.library.opcheck(
                ops.backward,
                (*d_outs, x, w_ih, w_hh, w_hr, batch_sizes, reverse, *out[3:], need_dx),
            )


def test_operators_never_write_to_their_inputs():
    args = op_args(2, True)
    saved = [a.clone() for a in args]
    out = ops.forward(*args, BATCH_SIZES, True)
    ops.forward_inference(*args, BATCH_SIZES, True)
    ops.backward(*out[:3], args[0], args[3], args[4], args[7], BATCH_SIZES, True, *out[3:], True)
    assert all(torch.equal(a, b) for a, b in zip(args, saved, strict=True))


# -- torch.func ---------------------------------------------------------------------------------------


def functional(module):
    params = {k: v.detach() for k, v in module.named_parameters()}
    return params, lambda p, x: torch.func.functional_call(module, p, (x,))[0]


def test_func_grad_vjp_jacrev_agree_with_nn_lstm():
    """nn.LSTM supports grad, vjp and jacrev on this torch: ours must give the same numbers."""
    ours, theirs = models()
    x = inputs(2)
    results = []
    for module in (ours, theirs):
        params, f = functional(module)

        def of_x(x, f=f, params=params):
            return f(params, x)

        g_params = torch.func.grad(lambda p, f=f: f(p, x).square().sum())(params)
        out, vjp_fn = torch.func.vjp(of_x, x)
        (vjp_x,) = vjp_fn(torch.ones_like(out))
        results.append([*g_params.values(), vjp_x, torch.func.jacrev(of_x)(x)])
    assert_close_lists(results[0], results[1], 1e-11, "torch.func")


def test_vmap_over_inputs_equals_a_loop_of_nn_lstm_calls():
    """nn.LSTM raises under vmap ("Batching rule not implemented for aten::lstm.input"): the control
    is nn.LSTM called on each sample. Also vmap over the weights (the loop rule)."""
    ours, theirs = models()
    xs = torch.stack([inputs(s) for s in range(3)])  # (3, T, B, I)
    params, f = functional(ours)
    got = torch.func.vmap(lambda x: f(params, x))(xs)
    with torch.no_grad():
        want = torch.stack([theirs(x)[0] for x in xs])
    assert torch.allclose(got, want, atol=1e-12, rtol=0)
    unbatched = torch.func.vmap(lambda x: f(params, x))(xs[:, :, 0])  # (3, T, I): unbatched samples
    assert torch.allclose(unbatched, want[:, :, :1].squeeze(2), atol=1e-12, rtol=0)
    scaled = {k: torch.stack([v, 2 * v]) for k, v in params.items()}
    got_w = torch.func.vmap(lambda p: f(p, xs[0]))(scaled)
    want_w = []
    for k in (1, 2):
        theirs.load_state_dict({n: k * v for n, v in params.items()})
        with torch.no_grad():
            want_w.append(theirs(xs[0])[0])
    assert torch.allclose(got_w, torch.stack(want_w), atol=1e-12, rtol=0)


@pytest.mark.parametrize("which", KERNELS)
def test_gradcheck_with_batched_gradients(which):
    """PyTorch's batched-gradient check: vmap over the backward (and the backward operator)."""
    args = op_args(2, True, seed=3, requires_grad=True)
    with kernels(which):
        assert torch.autograd.gradcheck(
            lambda *a: ops.lstm_sequence(*a, BATCH_SIZES, True),
            args,
            check_batched_grad=True,
        )


# -- second derivatives -----------------------------------------------------------------------------


@pytest.mark.parametrize("proj,bias,batch_sizes,reverse", CASES)
def test_gradgradcheck_every_configuration(proj, bias, batch_sizes, reverse):
    """Second derivatives in float64 (fast mode: random projections of the Jacobians of the
    gradient; one configuration below also in full)."""
    assert_gradgradcheck(proj, bias, batch_sizes, reverse, fast_mode=True)


def test_gradgradcheck_full_mode():
    assert_gradgradcheck(2, True, BATCH_SIZES, True, fast_mode=False, shapes=(3, 2, 2, 2))


def assert_gradgradcheck(proj, bias, batch_sizes, reverse, fast_mode, shapes=(T, B, I, H)):
    T_, B_, I_, H_ = shapes
    P = proj or H_
    g = torch.Generator().manual_seed(4)
    sizes = [(T_, B_, I_), (B_, P), (B_, H_), (4 * H_, I_), (4 * H_, P)]
    sizes += [(4 * H_,)] * bias + [(P, H_)] * bool(proj)
    args = [torch.randn(*s, dtype=F64, generator=g, requires_grad=True) for s in sizes]
    batch_sizes = None if batch_sizes is None else batch_sizes.clamp(max=B_)[:T_]

    def run(x, h0, c0, w_ih, w_hh, *rest):
        b_ih, b_hh = (rest[0], 0 * rest[0]) if bias else (None, None)
        w_hr = rest[-1] if proj else None
        return ops.lstm_sequence(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse)

    assert torch.autograd.gradgradcheck(run, args, fast_mode=fast_mode)


def test_second_derivatives_equal_nn_lstms():
    """A gradient penalty: d/dθ |∂L/∂x|² through both models."""
    ours, theirs = models()
    results = []
    for model in (ours, theirs):
        x = inputs(5).requires_grad_()
        (gx,) = torch.autograd.grad(model(x)[0].sum(), x, create_graph=True)
        leaves = [x, *model.parameters()]  # the head's bias does not reach ∂L/∂x: a zero gradient
        results.append(
            torch.autograd.grad(
                gx.square().sum(), leaves, allow_unused=True, materialize_grads=True
            )
        )
    assert_close_lists(results[0], results[1], 1e-11, "second derivatives")


def test_second_derivatives_through_a_retained_graph_equal_the_readable_loops():
    """Backward through the gradients' graph three times (twice with retain_graph, as gradcheck's
    rows do): each equals autograd twice through `reference_sequence`; the readable loop's vjp that
    the node keeps meanwhile is gone after the backward that frees the graph."""
    x, h0, c0, w_ih, w_hh, b, _, w_hr = op_args(2, True, seed=3, requires_grad=True)
    leaves = [x, h0, c0, w_ih, w_hh, b, w_hr]
    g = torch.Generator().manual_seed(9)
    weights = [torch.randn(s, dtype=F64, generator=g) for s in [(T, B, 2), (B, 2), (B, H)]]
    vectors = [[torch.randn(t.shape, dtype=F64, generator=g) for t in leaves] for _ in range(3)]

    def second_derivatives(fn):
        out = fn(x, h0, c0, w_ih, w_hh, b, 0.5 * b, w_hr, BATCH_SIZES, True)[:3]
        loss = sum((o * w).sum() for o, w in zip(out, weights, strict=True))
        grads = torch.autograd.grad(loss, leaves, create_graph=True)
        results, kept = [], []
        for k, v in enumerate(vectors):
            results.append(torch.autograd.grad(grads, leaves, v, retain_graph=k < 2))
            kept.append(getattr(grads[0].grad_fn, "first_order_vjp", None) is not None)
        return results, kept

    ours, kept = second_derivatives(ops.lstm_sequence)
    theirs, _ = second_derivatives(reference_sequence)
    for k, (a, c) in enumerate(zip(ours, theirs, strict=True)):
        assert_close_lists(a, c, 1e-11, f"second derivatives, backward {k}")
    assert kept == [True, True, False]  # the last two rows used it; the graph's end dropped it


def test_hessian_vector_product_through_torch_func():
    """Reverse over reverse: vjp of torch.func.grad."""
    ours, theirs = models()
    x, v = inputs(6), inputs(7)
    hvps = []
    for model in (ours, theirs):
        params, f = functional(model)

        def loss_grad(x, f=f, params=params):
            return torch.func.grad(lambda x: f(params, x).square().sum())(x)

        hvps.append(torch.func.vjp(loss_grad, x)[1](v)[0])
    assert torch.allclose(hvps[0], hvps[1], atol=1e-11, rtol=0)


# -- half precision and autocast ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_modules_are_close_to_float64(dtype):
    """bfloat16/float16 parameters and inputs: float32 inside, results and gradients in the input's
    dtype, and no further from float64 than nn.LSTM in the same dtype (a little slack for rounding)."""
    torch.manual_seed(0)
    exact = nn.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=2, dtype=F64)
    theirs = nn.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=2).to(dtype)
    theirs.load_state_dict(exact.state_dict())  # the weights rounded to dtype
    exact.load_state_dict(theirs.state_dict())  # ...and the float64 model on the same weights
    ours = lstmbyhand.LSTM.from_torch(theirs)
    x = inputs(8).to(dtype).requires_grad_()
    out, (h, c) = ours(x)
    assert out.dtype == h.dtype == c.dtype == dtype
    out.sum().backward()
    assert x.grad.dtype == dtype and ours.weight_ih_l0.grad.dtype == dtype
    with torch.no_grad():
        want = exact(x.double())[0]
        ours_err = (out.double() - want).abs().max().item()
        theirs_err = (theirs(x)[0].double() - want).abs().max().item()
    assert ours_err <= 1.5 * theirs_err + 1e-3


def test_autocast_gives_nn_lstms_dtypes():
    """Under CPU autocast nn.LSTM runs float32 inputs and weights in the autocast dtype (oneDNN is
    asked for bfloat16 source, weights and results) and leaves float64 alone. Where this CPU's
    oneDNN cannot run it (no AVX-512), the control is nn.LSTM on bfloat16 copies, what autocast does."""
    torch.manual_seed(0)
    theirs = nn.LSTM(I, H, num_layers=2)
    ours = lstmbyhand.LSTM.from_torch(theirs)
    x = torch.randn(T, B, I, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, (h, c) = ours(x)
        try:
            want = theirs(x)[0]
        except RuntimeError as err:  # oneDNN: "could not create a primitive descriptor"
            assert "primitive" in str(err)
            want = None
    if want is None:
        with torch.no_grad():
            want = theirs.to(torch.bfloat16)(x.to(torch.bfloat16))[0]
    assert out.dtype == h.dtype == c.dtype == want.dtype == torch.bfloat16
    assert torch.allclose(out.float(), want.float(), atol=2e-2, rtol=0)
    out.float().sum().backward()
    assert x.grad.dtype == torch.float32 and ours.weight_ih_l0.grad.dtype == torch.float32
    ours64 = lstmbyhand.LSTM(I, H, dtype=F64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert ours64(x.detach().double())[0].dtype == F64


def test_forward_mode_jvp_jacfwd_and_hessian_agree_with_nn_lstm():
    ours, theirs = models()
    x, v = inputs(9), inputs(10)
    results = []
    for model in (ours, theirs):
        params, f = functional(model)

        def of_x(x, f=f, params=params):
            return f(params, x)

        jvp_out = torch.func.jvp(of_x, (x,), (v,))[1]
        hess = torch.func.hessian(lambda x, g=of_x: g(x).square().sum())(x[:2, :1])
        results.append([jvp_out, torch.func.jacfwd(of_x)(x), hess])
    assert_close_lists(results[0], results[1], 1e-11, "forward mode")


@pytest.mark.parametrize("used", [0, 1, 2])
def test_one_result_in_the_loss_gives_nn_lstms_first_and_second_derivatives(used):
    """Only output, h_n or c_n in the loss, no initial state: the operators get None for the unused
    gradients and the zero states, and give nn.LSTM's gradients and a gradient penalty's."""
    torch.manual_seed(used)
    ours = lstmbyhand.LSTM(I, H, num_layers=2, bidirectional=True, dtype=F64)
    theirs = ours.to_torch()
    results = []
    for model in (ours, theirs):
        x = inputs(used).requires_grad_()
        out, (h_n, c_n) = model(x)
        picked = (out, h_n, c_n)[used]
        loss = (picked * torch.linspace(-1, 1, picked.numel(), dtype=F64).view_as(picked)).sum()
        leaves = [x, *model.parameters()]
        grads = torch.autograd.grad(loss, leaves, create_graph=True)
        penalty = sum(g.square().sum() for g in grads)
        second = torch.autograd.grad(penalty, leaves, allow_unused=True, materialize_grads=True)
        results.append([*grads, *second])
    assert_close_lists(results[0], results[1], 1e-11, f"derivatives, result {used} alone")
