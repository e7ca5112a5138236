"""`DirectionWeights` unpacks into every function that takes one direction's weights: its field
order is their parameter order (the record replaced positional lists that relied on a dict's order)."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from lstmbyhand import LSTM
from lstmbyhand.nn import ops
from lstmbyhand.nn.gates import DirectionWeights, lstm_cell
from lstmbyhand.nn.sequence import reference_sequence


@pytest.mark.parametrize("fn", [lstm_cell, reference_sequence, ops.lstm_sequence])
def test_field_order_is_the_parameter_order(fn):
    names = list(inspect.signature(fn).parameters)[3:8]  # after x, h, c
    assert tuple(names) == DirectionWeights._fields


@pytest.mark.parametrize("proj_size", [0, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_direction_weights_are_the_named_parameters(bias, proj_size):
    torch.manual_seed(0)
    theirs = nn.LSTM(3, 4, num_layers=2, bidirectional=True, bias=bias, proj_size=proj_size)
    ours = LSTM.from_torch(theirs)
    for layer in range(2):
        for direction, suffix in enumerate(("", "_reverse")):
            w = ours.direction_weights(layer, direction)
            for name, value in w._asdict().items():
                expected = getattr(theirs, f"{name}_l{layer}{suffix}", None)
                if expected is None:
                    assert value is None, name
                else:
                    assert torch.equal(value, expected), name
    with pytest.raises(IndexError, match="expected a layer below 2, got layer 2"):
        ours.direction_weights(2, 0)
