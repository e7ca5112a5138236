"""Invalid arguments and inputs, each given to torch.nn.LSTM / nn.LSTMCell and to ours: the same outcome.

Both ways: where torch raises, ours raises the same exception type with the same text (up to the class
name in "X.__init__() got an unexpected keyword argument"); where torch accepts, ours accepts and
gives torch's shapes and numbers, and the same warnings. The tables hold every check in
torch/nn/modules/rnn.py (and in the lstm / lstm_cell kernels behind it) and the edge values around
them.

Where torch's text comes from deep inside its own kernels or argument parser (a BLAS shape message,
"get_mkldnn_dtype", the list of lstm()'s overloads), the case says `same="type"`: ours raises the
same type with a message about the argument. `DIFFERENCES` lists the few cases where ours
deliberately or necessarily differs, with the reason; each runs as a strict xfail, so it shows up
the day the two agree.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import lstmbyhand


@dataclass
class Case:
    label: str
    ctor: tuple = ()  # positional constructor arguments
    kwargs: dict = field(default_factory=dict)  # keyword constructor arguments
    call: Callable | None = None  # () -> (args of forward); None: construction only
    same: str = "message"  # "message": type and text equal; "type": the type only


def x(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype)


def z(*shape, dtype=torch.float32):
    return torch.zeros(*shape, dtype=dtype)


def packed(data, lengths):
    return pack_padded_sequence(data, lengths)


LSTM_CASES = [
    # --- constructor: every check of RNNBase.__init__, in its order ---
    Case("input_size=0", (0, 5)),
    Case("input_size=-1", (-1, 5)),
    Case("input_size=3.0", (3.0, 5)),
    Case("input_size='10'", ("10", 5)),
    Case("input_size=True (an int)", (True, 5)),
    Case("hidden_size=0", (3, 0)),
    Case("hidden_size=-2", (3, -2)),
    Case("hidden_size=5.0", (3, 5.0)),
    Case("hidden_size=True (an int)", (3, True)),
    Case("num_layers=0", (3, 5), {"num_layers": 0}),
    Case("num_layers=2.0", (3, 5), {"num_layers": 2.0}),
    Case("num_layers='2'", (3, 5), {"num_layers": "2"}),
    Case("num_layers=True", (3, 5), {"num_layers": True}),
    Case("bias=0", (3, 5), {"bias": 0}),
    Case("bias=1", (3, 5), {"bias": 1}),
    Case("bias='True'", (3, 5), {"bias": "True"}),
    Case("bias=None", (3, 5), {"bias": None}),
    Case("batch_first=0", (3, 5), {"batch_first": 0}),
    Case("batch_first='False'", (3, 5), {"batch_first": "False"}),
    Case("bidirectional=1 (truthy)", (3, 5), {"bidirectional": 1}),
    Case("bidirectional='no' (truthy)", (3, 5), {"bidirectional": "no"}),
    Case("dropout=1.5", (3, 5), {"dropout": 1.5}),
    Case("dropout=-0.1", (3, 5), {"dropout": -0.1}),
    Case("dropout=True", (3, 5), {"dropout": True}),
    Case("dropout='0.1'", (3, 5), {"dropout": "0.1"}),
    Case("dropout=0.2, one layer (warns)", (3, 5), {"dropout": 0.2}),
    Case("dropout=1, two layers", (3, 5), {"dropout": 1, "num_layers": 2}),
    Case("proj_size=-1", (3, 5), {"proj_size": -1}),
    Case("proj_size=5 (= hidden)", (3, 5), {"proj_size": 5}),
    Case("proj_size=7 (> hidden)", (3, 5), {"proj_size": 7}),
    Case("proj_size=1.5", (3, 5), {"proj_size": 1.5}),
    Case("proj_size=True", (3, 5), {"proj_size": True}),
    Case("dtype=int64", (3, 5), {"dtype": torch.int64}),
    Case("device='bogus'", (3, 5), {"device": "bogus"}),
    Case("unknown keyword", (3, 5), {"foo": 1}),
    # nn.LSTM's counts include RNNBase's `mode` argument: "takes from 4 to 12 ... 13 were given"
    Case("too many positionals", (3, 5, 1, True, False, 0.0, False, 0, None, None, 7), same="type"),
    # --- forward of LSTM(4, 3, num_layers=2): the checks of LSTM.forward, check_forward_args ---
    Case("input 4-D", (4, 3, 2), call=lambda: (x(1, 5, 2, 4),)),
    Case("input 1-D", (4, 3, 2), call=lambda: (x(4),)),
    Case("input 0-D", (4, 3, 2), call=lambda: (torch.tensor(1.0),)),
    Case("input_size mismatch", (4, 3, 2), call=lambda: (x(5, 2, 7),)),
    Case("input_size mismatch, unbatched", (4, 3, 2), call=lambda: (x(5, 7),)),
    Case("input float64, weights float32", (4, 3, 2), call=lambda: (x(5, 2, 4).double(),)),
    Case("input int64", (4, 3, 2), call=lambda: (torch.ones(5, 2, 4, dtype=torch.int64),)),
    Case("sequence length 0", (4, 3, 2), call=lambda: (x(0, 2, 4),)),
    Case("sequence length 0, unbatched", (4, 3, 2), call=lambda: (x(0, 4),)),
    Case("batch of 0", (4, 3, 2), call=lambda: (x(5, 0, 4),)),
    Case("hx a bare tensor (2-D slices)", (4, 3, 2), call=lambda: (x(5, 2, 4), z(2, 2, 3))),
    Case("hx a bare 4-D tensor", (4, 3, 2), call=lambda: (x(5, 2, 4), z(2, 2, 2, 3)), same="type"),
    Case("hx one tensor in a tuple", (4, 3, 2), call=lambda: (x(5, 2, 4), (z(2, 2, 3),))),
    Case("hx three tensors", (4, 3, 2), call=lambda: (x(5, 2, 4), (z(2, 2, 3),) * 3)),
    Case("hx a list", (4, 3, 2), call=lambda: (x(5, 2, 4), [z(2, 2, 3), z(2, 2, 3)])),
    Case("hx (None, c)", (4, 3, 2), call=lambda: (x(5, 2, 4), (None, z(2, 2, 3)))),
    Case("h_0 layers wrong", (4, 3, 2), call=lambda: (x(5, 2, 4), (z(1, 2, 3), z(2, 2, 3)))),
    Case("c_0 batch wrong", (4, 3, 2), call=lambda: (x(5, 2, 4), (z(2, 2, 3), z(2, 1, 3)))),
    Case("h_0 size wrong", (4, 3, 2), call=lambda: (x(5, 2, 4), (z(2, 2, 7), z(2, 2, 3)))),
    Case("hx 2-D for batched input", (4, 3, 2), call=lambda: (x(5, 2, 4), (z(2, 3), z(2, 3)))),
    Case("hx 3-D for unbatched input", (4, 3, 2), call=lambda: (x(5, 4), (z(2, 1, 3), z(2, 1, 3)))),
    Case("unbatched, hx stacked in one tensor", (4, 3, 2), call=lambda: (x(5, 4), z(2, 2, 3))),
    Case(
        "h_0 float64 with float32 input",
        (4, 3, 2),
        call=lambda: (x(5, 2, 4), (z(2, 2, 3, dtype=torch.float64), z(2, 2, 3))),
        same="type",
    ),
    Case(
        "projection: h_0 of hidden_size",
        (4, 3, 2),
        {"proj_size": 2},
        call=lambda: (x(5, 2, 4), (z(2, 2, 3), z(2, 2, 3))),
    ),
    Case(
        "projection: c_0 of proj_size",
        (4, 3, 2),
        {"proj_size": 2},
        call=lambda: (x(5, 2, 4), (z(2, 2, 2), z(2, 2, 2))),
    ),
    Case(
        "bidirectional: h_0 of one direction",
        (4, 3, 2),
        {"bidirectional": True},
        call=lambda: (x(5, 2, 4), (z(2, 2, 3), z(4, 2, 3))),
    ),
    Case(
        "packed, h_0 batch wrong",
        (4, 3, 2),
        call=lambda: (packed(x(5, 2, 4), [5, 3]), (z(2, 3, 3), z(2, 3, 3))),
        same="type",
    ),
    Case(
        "packed, input_size mismatch",
        (4, 3, 2),
        call=lambda: (packed(x(5, 2, 6), [5, 3]),),
        same="type",
    ),
    Case("packed float64", (4, 3, 2), call=lambda: (packed(x(5, 2, 4).double(), [5, 3]),)),
    Case(
        "packed, hx 2-D",
        (4, 3, 2),
        call=lambda: (packed(x(5, 2, 4), [5, 3]), (z(2, 3), z(2, 3))),
    ),
    Case("input a list", (4, 3, 2), call=lambda: ([[1.0, 2.0, 3.0, 4.0]],)),
]

CELL_CASES = [
    # --- constructor: nn.LSTMCell checks nothing itself; torch.empty and Parameter refuse ---
    Case("input_size=0 (accepted)", (0, 5)),
    Case("hidden_size=0 (accepted)", (3, 0)),
    Case("input_size=-1", (-1, 5)),
    Case("hidden_size=-1", (3, -1)),
    Case("input_size=3.0", (3.0, 5)),
    Case("input_size='3'", ("3", 5)),
    Case("input_size=True", (True, 5)),
    Case("hidden_size=5.0", (3, 5.0)),
    Case("bias=0 (falsy)", (3, 5), {"bias": 0}),
    Case("bias='x' (truthy)", (3, 5), {"bias": "x"}),
    Case("dtype=int64", (3, 5), {"dtype": torch.int64}),
    Case("unknown keyword", (3, 5), {"foo": 1}),
    # --- forward of LSTMCell(4, 3): LSTMCell.forward's ranks, then the lstm_cell kernel's checks ---
    Case("input 3-D", (4, 3), call=lambda: (x(1, 2, 4),)),
    Case("input 0-D", (4, 3), call=lambda: (torch.tensor(1.0),)),
    Case("input_size mismatch", (4, 3), call=lambda: (x(2, 5),)),
    Case("input_size mismatch, unbatched", (4, 3), call=lambda: (x(5),)),
    Case("input float64", (4, 3), call=lambda: (x(2, 4).double(),)),
    Case("input float64, no bias", (4, 3), {"bias": False}, call=lambda: (x(2, 4).double(),)),
    Case("h float64", (4, 3), call=lambda: (x(2, 4), (z(2, 3).double(), z(2, 3)))),
    Case("c float64 (promotes)", (4, 3), call=lambda: (x(2, 4), (z(2, 3), x(2, 3).double()))),
    Case("input int64", (4, 3), call=lambda: (torch.ones(2, 4, dtype=torch.int64),)),
    Case("hx a bare tensor", (4, 3), call=lambda: (x(2, 4), x(2, 3))),
    Case("hx a bare 3-D tensor", (4, 3), call=lambda: (x(2, 4), x(2, 2, 3))),
    Case("unbatched, hx stacked in one tensor", (4, 3), call=lambda: (x(4), x(2, 3))),
    Case("hx one tensor", (4, 3), call=lambda: (x(2, 4), (x(2, 3),))),
    Case("hx three tensors", (4, 3), call=lambda: (x(2, 4), (x(2, 3),) * 3)),
    Case("hx a list", (4, 3), call=lambda: (x(2, 4), [x(2, 3), x(2, 3)])),
    Case("hx (None, c)", (4, 3), call=lambda: (x(2, 4), (None, x(2, 3)))),
    Case("h 4-D", (4, 3), call=lambda: (x(2, 4), (z(2, 1, 1, 3), z(2, 3)))),
    Case("c 4-D", (4, 3), call=lambda: (x(2, 4), (z(2, 3), z(2, 1, 1, 3)))),
    Case("h 3-D", (4, 3), call=lambda: (x(2, 4), (z(2, 1, 3), z(2, 3)))),
    Case("h hidden_size wrong", (4, 3), call=lambda: (x(2, 4), (z(2, 4), z(2, 3)))),
    Case("c hidden_size wrong", (4, 3), call=lambda: (x(2, 4), (z(2, 3), z(2, 4)))),
    Case("h batch wrong", (4, 3), call=lambda: (x(2, 4), (z(5, 3), z(2, 3)))),
    Case("c batch wrong", (4, 3), call=lambda: (x(2, 4), (z(2, 3), z(5, 3)))),
    Case("unbatched input, batched hx", (4, 3), call=lambda: (x(4), (z(2, 3), z(2, 3)))),
    Case("batched input, unbatched hx", (4, 3), call=lambda: (x(2, 4), (z(3), z(3)))),
    Case("batched input, unbatched hx, batch = H", (4, 3), call=lambda: (x(3, 4), (z(3), z(3)))),
    Case("batch of 0", (4, 3), call=lambda: (x(0, 4),)),
    Case("input a list", (4, 3), call=lambda: ([[1.0, 2.0, 3.0, 4.0]],)),
]

# label -> why ours differs (each runs as a strict xfail)
DIFFERENCES = {
    "input a list": "ours raises TypeError naming the argument; nn.LSTM/LSTMCell raise AttributeError "
    "('list' object has no attribute 'dim'), an accident of calling input.dim() unchecked",
}


def outcome(build: Callable[[], nn.Module], case: Case):
    """('raises', type, text, warnings) or ('returns', module, result, warnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            module = build()
            result = None
            if case.call is not None:
                torch.manual_seed(0)
                result = module(*case.call())
        except Exception as err:  # noqa: BLE001 - the exception is what is compared
            return "raises", type(err), str(err), [str(w.message) for w in caught]
    return "returns", module, result, [str(w.message) for w in caught]


def without_class_name(text: str) -> str:
    return re.sub(r"\b(RNNBase|LSTMCell|LSTM)\.__init__\(\)", "__init__()", text)


def flat(result) -> list[torch.Tensor]:
    output, state = result if isinstance(result[1], tuple) else (None, result)
    output = getattr(output, "data", output)
    return [t for t in (output, *state) if t is not None]


def assert_same_outcome(theirs_cls, ours_cls, case: Case) -> None:
    theirs = outcome(lambda: theirs_cls(*case.ctor, **case.kwargs), case)

    def build_ours():
        module = ours_cls(*case.ctor, **case.kwargs)
        if case.call is not None and theirs[0] == "returns":
            module.load_state_dict(theirs[1].state_dict())
        return module

    ours = outcome(build_ours, case)
    assert ours[0] == theirs[0], f"torch {theirs[0]} {theirs[1:3]}, ours {ours[0]} {ours[1:3]}"
    assert ours[3] == theirs[3], "warnings differ"
    if theirs[0] == "raises":
        assert ours[1] is theirs[1], (
            f"torch raises {theirs[1].__name__}: {theirs[2]}; ours {ours[1:3]}"
        )
        if case.same == "message":
            assert without_class_name(ours[2]) == without_class_name(theirs[2])
        return
    assert without_class_name(repr(ours[1])).replace(ours_cls.__name__, "X") == without_class_name(
        repr(theirs[1])
    ).replace(theirs_cls.__name__, "X")
    assert [(k, v.shape, v.dtype) for k, v in ours[1].state_dict().items()] == [
        (k, v.shape, v.dtype) for k, v in theirs[1].state_dict().items()
    ]
    if case.call is not None:
        for a, b in zip(flat(ours[2]), flat(theirs[2]), strict=True):
            assert a.shape == b.shape and a.dtype == b.dtype
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def marked(cases: list[Case]) -> list:
    return [
        pytest.param(
            c,
            id=c.label,
            marks=[pytest.mark.xfail(strict=True, reason=DIFFERENCES[c.label])]
            if c.label in DIFFERENCES
            else [],
        )
        for c in cases
    ]


@pytest.mark.parametrize("case", marked(LSTM_CASES))
def test_lstm_refuses_and_accepts_what_nn_lstm_does(case):
    assert_same_outcome(nn.LSTM, lstmbyhand.LSTM, case)


@pytest.mark.parametrize("case", marked(CELL_CASES))
def test_lstm_cell_refuses_and_accepts_what_nn_lstm_cell_does(case):
    assert_same_outcome(nn.LSTMCell, lstmbyhand.LSTMCell, case)


def test_the_tables_see_both_outcomes():
    """A control: the tables hold cases torch accepts and cases it refuses, of several types."""
    kinds = set()
    for cls, cases in ((nn.LSTM, LSTM_CASES), (nn.LSTMCell, CELL_CASES)):
        for case in cases:
            result = outcome(lambda cls=cls, case=case: cls(*case.ctor, **case.kwargs), case)
            kinds.add(result[1].__name__ if result[0] == "raises" else "returns")
    assert {"returns", "TypeError", "ValueError", "RuntimeError", "IndexError"} <= kinds
