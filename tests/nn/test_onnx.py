"""ONNX export (nn/onnx.py): a plain `torch.onnx.export` of models holding our LSTM, run by
onnxruntime, gives torch.nn.LSTM's outputs on the same weights (atol 1e-5, float32), with each layer
direction as one node of ONNX's own `LSTM` operator.

Exporting is slow (seconds each), so one export serves every comparison: a model holding several
LSTM configurations, exported with dynamic sequence length and batch.
"""

from __future__ import annotations

import onnx  # dev (test) dependencies: missing ones fail the suite, never skip it
import onnxruntime as ort
import pytest
import torch
from helpers import assert_close_lists
from torch import nn

from lstmbyhand.nn import LSTM

ATOL = 1e-5
I = 3  # input size of every model here  # noqa: E741


class Zoo(nn.Module):
    """Several configurations in one model (one export): 1 layer with a given (h0, c0); 2 layers,
    bidirectional, batch_first, dropout (eval: off), no state given; no bias."""

    def __init__(self, cls: type[nn.Module]) -> None:
        super().__init__()
        self.one = cls(I, 5)
        self.stack = cls(I, 4, num_layers=2, bidirectional=True, batch_first=True, dropout=0.5)
        self.nobias = cls(I, 4, bias=False)

    def forward(self, x, h0, c0):  # x (T, B, I), h0 and c0 (1, B, 5)
        y1, (h1, c1) = self.one(x, (h0, c0))
        y2, (h2, c2) = self.stack(x.transpose(0, 1))  # batch-first (B, T, I)
        y3, (h3, c3) = self.nobias(x)
        return y1, h1, c1, y2, h2, c2, y3, h3, c3


class Projected(nn.Module):
    def __init__(self, cls: type[nn.Module]) -> None:
        super().__init__()
        self.lstm = cls(I, 6, num_layers=2, proj_size=2, bidirectional=True)

    def forward(self, x):
        y, (h, c) = self.lstm(x)
        return y, h, c


def _pair(model_cls: type[nn.Module]) -> tuple[nn.Module, nn.Module]:
    """(ours, nn.LSTM's with ours' weights copied), both in eval mode."""
    torch.manual_seed(0)
    ours = model_cls(LSTM).eval()
    theirs = model_cls(nn.LSTM).eval()
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def _inputs(T: int, B: int) -> tuple[torch.Tensor, ...]:
    return torch.randn(T, B, I), torch.randn(1, B, 5), torch.randn(1, B, 5)


def _run(session, inputs) -> list[torch.Tensor]:
    feed = {arg.name: t.numpy() for arg, t in zip(session.get_inputs(), inputs, strict=True)}
    return [torch.from_numpy(out) for out in session.run(None, feed)]


def _op_types(path) -> list[str]:
    return [node.op_type for node in onnx.load(str(path)).graph.node]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """The zoo exported with dynamic T and B, its onnxruntime session and nn.LSTM's copy of it."""
    ours, theirs = _pair(Zoo)
    path = tmp_path_factory.mktemp("onnx") / "zoo.onnx"
    T, B = torch.export.Dim("T", min=1), torch.export.Dim("B", min=1)
    torch.onnx.export(
        ours, _inputs(5, 2), path, dynamic_shapes=({0: T, 1: B}, {1: B}, {1: B}), verbose=False
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return path, session, theirs


@pytest.mark.parametrize(("T", "B"), [(5, 2), (9, 3), (1, 1)])
def test_zoo_matches_nn_lstm_at_any_length_and_batch(zoo, T, B):
    _, session, theirs = zoo
    torch.manual_seed(T * 10 + B)
    inputs = _inputs(T, B)
    with torch.no_grad():
        expected = list(theirs(*inputs))
    assert_close_lists(_run(session, inputs), expected, ATOL, f"zoo at T={T}, B={B}")


def test_zoo_is_onnx_lstm_nodes_one_per_layer_direction(zoo):
    ops = _op_types(zoo[0])
    assert ops.count("LSTM") == 1 + 2 * 2 + 1  # one, stack (2 layers x 2 directions), nobias
    model = onnx.load(str(zoo[0]))
    assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}  # no custom operator left
    directions = [
        attr.s.decode()
        for node in model.graph.node
        if node.op_type == "LSTM"
        for attr in node.attribute
        if attr.name == "direction"
    ]
    assert sorted(directions) == ["forward"] * 4 + ["reverse"] * 2


def test_projection_is_refused_with_the_reason(tmp_path):
    """Raised under both of the exporter's captures, so its text is what the user reads."""
    ours, _ = _pair(Projected)
    with pytest.raises(Exception, match="expected proj_size=0, got a projection"):
        torch.onnx.export(ours, (torch.randn(5, 2, I),), tmp_path / "refused.onnx", verbose=False)


def test_torchscript_exporter_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match="expected torch.onnx.export's default exporter"):
        torch.onnx.export(
            LSTM(I, 4).eval(), (torch.randn(5, 2, I),), tmp_path / "ts.onnx", dynamo=False
        )


@pytest.mark.parametrize("options", [{"peephole": True}, {"layer_norm": True, "zoneout": 0.1}])
def test_cell_variants_are_refused_with_the_reason(tmp_path, options):
    """Without the refusal the exporter fails later with a missing ONNX function for the variant
    operator; with it the user reads which option ONNX's LSTM operator cannot express."""
    model = LSTM(I, 4, **options).eval()
    with pytest.raises(
        Exception, match="expected the plain cell .forget_bias allowed., got the cell variant"
    ):
        torch.onnx.export(model, (torch.randn(5, 2, I),), tmp_path / "variant.onnx", verbose=False)
