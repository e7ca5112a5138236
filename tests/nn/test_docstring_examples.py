"""The Examples in LSTM's and LSTMCell's docstrings run as written and print what they show."""

import doctest

import pytest
import torch

import lstmbyhand
from lstmbyhand.nn import layers


@pytest.mark.parametrize("cls", [lstmbyhand.LSTM, lstmbyhand.LSTMCell])
def test_docstring_examples_run(cls):
    (test,) = doctest.DocTestFinder(recurse=False).find(cls, cls.__name__, globs={}, module=layers)
    assert len(test.examples) >= 5  # the example is there and was found
    torch.manual_seed(0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    result = runner.run(test)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"
