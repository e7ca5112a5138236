"""torch.compile picks the operator the way eager does: without gradients the cache-free
`forward_inference` (Dynamo guards on grad mode, so each mode gets its own graph), with gradients
`forward` and its cache; torch.export and torch.jit.trace keep `forward` in both modes
(tests/nn/test_ops.py)."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_close_lists

from lstmbyhand.nn import LSTM


@pytest.mark.parametrize("grad", [False, True])
def test_compiled_graph_runs_the_operator_eager_runs(grad):
    torch._dynamo.reset()
    torch.manual_seed(0)
    lstm = LSTM(3, 4, num_layers=2, bidirectional=True)
    graphs = []

    def backend(gm, example_inputs):
        graphs.append([str(n.target) for n in gm.graph.nodes if n.op == "call_function"])
        return gm.forward

    compiled = torch.compile(lstm, backend=backend, fullgraph=True)
    x = torch.randn(5, 2, 3)
    with torch.set_grad_enabled(grad):
        got = compiled(x)
        want = lstm(x)
    assert_close_lists([got[0], *got[1]], [want[0], *want[1]], 0.0, "compiled vs eager")
    (targets,) = graphs
    ops = [t for t in targets if "lstmbyhand" in t]
    name = "lstmbyhand.forward" if grad else "lstmbyhand.forward_inference"
    assert ops == [name] * 4, ops  # one per layer direction (Dynamo names the packet)


def test_compiled_graphs_write_no_zeros_for_the_lstm():
    """The zero initial states, the biases' sum and the unused h_n / c_n gradients stay inside our
    operators: the forward graph hands them None and both biases, the backward graph None for the
    gradients of h_n and c_n, and neither holds an operator that makes zeros or adds the biases
    (each was a kernel inductor generated and compiled)."""
    from functorch.compile import make_boxed_func
    from torch._functorch.aot_autograd import aot_module_simplified

    torch._dynamo.reset()
    torch.manual_seed(0)
    lstm = LSTM(3, 4, num_layers=2)
    graphs = {}

    def keep(name):
        def compiler(gm, example_inputs):
            graphs[name] = [n for n in gm.graph.nodes if n.op == "call_function"]
            return make_boxed_func(gm.forward)

        return compiler

    def backend(gm, example_inputs):
        return aot_module_simplified(gm, example_inputs, keep("forward"), keep("backward"))

    def output(x):  # h_n and c_n unused, as under a head on the output
        return lstm(x)[0]

    compiled = torch.compile(output, backend=backend, fullgraph=True)
    x = torch.randn(5, 2, 3)
    got = compiled(x)
    want = output(x)
    assert_close_lists([got], [want], 0.0, "compiled vs eager")
    grads = torch.autograd.grad(got.sum(), list(lstm.parameters()))
    expected = torch.autograd.grad(want.sum(), list(lstm.parameters()))
    assert_close_lists(list(grads), list(expected), 0.0, "gradients, compiled vs eager")
    forward = [n for n in graphs["forward"] if "lstmbyhand" in str(n.target)]
    backward = [n for n in graphs["backward"] if "lstmbyhand" in str(n.target)]
    assert len(forward) == len(backward) == 2
    assert all(n.args[1] is None and n.args[2] is None for n in forward)  # h0, c0
    assert all(n.args[1] is None and n.args[2] is None for n in backward)  # d_hn, d_cn
    for name, nodes in graphs.items():
        made = [str(n.target) for n in nodes if "lstmbyhand" not in str(n.target)]
        assert not [t for t in made if any(w in t for w in ("zeros", "full", "fill", "add"))], (
            name,
            made,
        )


def test_compiled_lstm_compiles_one_graph_per_grad_mode_and_no_more():
    """Alternating training steps and no_grad calls compile two graphs (Dynamo guards on grad mode)
    and reuse them: nothing else the forward reads (the cell's kind, the weights' names, forward-mode
    AD's level) changes between calls, and each compiled call gives eager's numbers."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    lstm = LSTM(3, 4, num_layers=2, proj_size=2)
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    compiled = torch.compile(lstm, backend=backend, fullgraph=True)
    x = torch.randn(5, 2, 3)
    for _ in range(3):
        got = compiled(x)[0]
        grads = torch.autograd.grad(got.sum(), list(lstm.parameters()))
        want = lstm(x)[0]
        expected = torch.autograd.grad(want.sum(), list(lstm.parameters()))
        assert_close_lists([got, *grads], [want, *expected], 0.0, "compiled training step")
        with torch.no_grad():
            assert_close_lists([compiled(x)[0]], [lstm(x)[0]], 0.0, "compiled no_grad call")
    assert len(graphs) == 2
