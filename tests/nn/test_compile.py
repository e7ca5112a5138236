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
