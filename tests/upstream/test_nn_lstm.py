# ruff: noqa: B007, B017, B023, B905 - upstream's code, kept as written
"""PyTorch's nn.LSTM / nn.LSTMCell tests from test/test_nn.py, ported.

Upstream: pytorch/pytorch, test/test_nn.py at commit 74f2fa66feec00335f72813782f4802e80bff4cb
(class TestNN). PyTorch's tests are BSD-3-Clause licensed. Each test runs with torch.nn.LSTM /
nn.LSTMCell (the control) and with lstmbyhand.LSTM / LSTMCell in its place; the bodies, assertions
and tolerances are upstream's, `nn.LSTM` / `getattr(nn, mode)` replaced by the class under test and
the RNN / GRU halves of mixed tests left out (lstmbyhand has neither).

Ported: test_rnn_args_check (its LSTM mode), test_projections_lstm_args_check,
test_rnn_initial_hidden_state (LSTM), test_projections_lstm_initial_hidden_state,
test_cudnn_forward_exception (its LSTM entries; it runs on the CPU upstream too),
test_RNN_input_size_zero (LSTM), test_error_RNN_seq_len_zero (LSTM; upstream skips the whole test
without cuDNN although its CPU iterations need none: those run here), test_RNN_cell_no_broadcasting
(its LSTMCell lines), test_LSTM_cell, test_LSTM_cell_forward_input_size,
test_LSTM_cell_forward_hidden_size, test_partial_flat_weights (needs CUDA: skipped without it).

Not ported, because they need CUDA / cuDNN (or several GPUs) for every line: test_rnn_check_device,
test_projections_lstm_check_device, test_RNN_cpu_vs_cudnn_no_dropout / _with_dropout,
test_cudnn_weight_format, test_cudnn_weight_tying, test_RNN_cudnn_weight_norm,
test_pack_sequence_batch_sizes_throw, test_rnn_fused (TestNNDeviceType, @onlyCUDA). The dropout
tests (test_RNN_dropout, test_RNN_dropout_state, test_RNN_change_dropout) exercise nn.RNN only.
"""

from __future__ import annotations

import re
import unittest

import pytest
import torch
from torch import nn

import lstmbyhand

LSTMS = [
    pytest.param(nn.LSTM, id="torch.nn.LSTM"),
    pytest.param(lstmbyhand.LSTM, id="lstmbyhand.LSTM"),
]
CELLS = [
    pytest.param(nn.LSTMCell, id="torch.nn.LSTMCell"),
    pytest.param(lstmbyhand.LSTMCell, id="lstmbyhand.LSTMCell"),
]
tc = unittest.TestCase()


def _equal(
    a, b
):  # TestCase.assertEqual of upstream: tensors (and nested tuples) with dtype tolerances
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("LSTM", LSTMS)
def test_rnn_args_check(LSTM):
    input_size = 3
    hidden_size = 5
    num_layers = 2
    batch_size = 4
    seq_len = 6
    num_directions = 1
    bad_size = 7  # prime number so that no size can divide it.

    def test(input_shape, hidden_shape, mode):
        for input, hidden in get_inputs(input_shape, hidden_shape, mode):
            model = LSTM(input_size, hidden_size, num_layers)
            tc.assertRaises(RuntimeError, lambda: model(input, hidden))

    correct_input_shape = (seq_len, batch_size, input_size)
    correct_hidden_shape = (num_layers * num_directions, batch_size, hidden_size)

    def update_shape(shape, dim, new_dim_size):
        new_shape = list(shape)
        new_shape[dim] = new_dim_size
        return tuple(new_shape)

    def get_inputs(input_shape, hidden_shape, mode):
        """returns list( tuple(input, hidden) ) where input, hidden are inputs to a model"""
        input = torch.randn(input_shape)
        hidden = torch.randn(hidden_shape)
        if mode != "LSTM":
            return [(input, hidden)]
        if hidden_shape == correct_hidden_shape:
            return [(input, (hidden, hidden))]
        good_hidden = torch.randn(correct_hidden_shape)
        return [
            (input, (hidden, good_hidden)),
            (input, (good_hidden, hidden)),
        ]

    for mode in ["LSTM"]:
        # Incorrect input batch size
        input_shape = update_shape(correct_input_shape, 1, bad_size)
        hidden_shape = correct_hidden_shape
        test(input_shape, hidden_shape, mode)

        # Incorrect hidden batch size
        input_shape = correct_input_shape
        hidden_shape = update_shape(correct_hidden_shape, 1, bad_size)
        test(input_shape, hidden_shape, mode)

        # Incorrect input size
        input_shape = update_shape(correct_input_shape, 2, bad_size)
        hidden_shape = correct_hidden_shape
        test(input_shape, hidden_shape, mode)

        # Incorrect hidden size
        input_shape = correct_input_shape
        hidden_shape = update_shape(correct_hidden_shape, 2, bad_size)
        test(input_shape, hidden_shape, mode)

        # Incorrect hidden[0]
        input_shape = correct_input_shape
        hidden_shape = update_shape(correct_hidden_shape, 0, bad_size)
        test(input_shape, hidden_shape, mode)


@pytest.mark.parametrize("LSTM", LSTMS)
def test_projections_lstm_args_check(LSTM):
    input_size = 3
    hidden_size = 5
    proj_size = 2
    num_layers = 2
    batch_size = 4
    seq_len = 6
    num_directions = 1
    bad_size = 7  # prime number so that no size can divide it.

    def test(input_shape, hidden_h_shape, hidden_c_shape):
        for input, hidden in get_inputs(input_shape, hidden_h_shape, hidden_c_shape):
            model = LSTM(input_size, hidden_size, num_layers, proj_size=proj_size)
            tc.assertRaises(RuntimeError, lambda: model(input, hidden))

    correct_input_shape = (seq_len, batch_size, input_size)
    correct_hidden_h_shape = (num_layers * num_directions, batch_size, proj_size)
    correct_hidden_c_shape = (num_layers * num_directions, batch_size, hidden_size)

    def update_shape(shape, dim, new_dim_size):
        new_shape = list(shape)
        new_shape[dim] = new_dim_size
        return tuple(new_shape)

    def get_inputs(input_shape, hidden_h_shape, hidden_c_shape):
        """returns list( tuple(input, hidden) ) where input, hidden are inputs to a model"""
        input = torch.randn(input_shape)
        hidden_h = torch.randn(hidden_h_shape)
        hidden_c = torch.randn(hidden_c_shape)
        return [(input, (hidden_h, hidden_c))]

    # Incorrect input batch size
    input_shape = update_shape(correct_input_shape, 1, bad_size)
    test(input_shape, correct_hidden_h_shape, correct_hidden_c_shape)

    # Incorrect hidden batch size
    input_shape = correct_input_shape
    hidden_h_shape = update_shape(correct_hidden_h_shape, 1, bad_size)
    hidden_c_shape = update_shape(correct_hidden_c_shape, 1, bad_size)
    test(input_shape, hidden_h_shape, hidden_c_shape)

    # Incorrect input size
    input_shape = update_shape(correct_input_shape, 2, bad_size)
    test(input_shape, correct_hidden_h_shape, correct_hidden_c_shape)

    # Incorrect hidden size
    input_shape = correct_input_shape
    hidden_h_shape = update_shape(correct_hidden_h_shape, 2, bad_size)
    hidden_c_shape = update_shape(correct_hidden_c_shape, 2, bad_size)
    test(input_shape, hidden_h_shape, hidden_c_shape)

    # Incorrect hidden[0]
    input_shape = correct_input_shape
    hidden_h_shape = update_shape(correct_hidden_h_shape, 0, bad_size)
    hidden_c_shape = update_shape(correct_hidden_c_shape, 0, bad_size)
    test(input_shape, hidden_h_shape, hidden_c_shape)

    # Incorrect proj size = hidden size
    input_shape = correct_input_shape
    hidden_h_shape = update_shape(correct_hidden_h_shape, 0, hidden_size)
    hidden_c_shape = correct_hidden_c_shape
    test(input_shape, hidden_h_shape, hidden_c_shape)

    # Incorrect proj size != hidden size
    input_shape = correct_input_shape
    hidden_h_shape = update_shape(correct_hidden_h_shape, 0, bad_size)
    hidden_c_shape = correct_hidden_c_shape
    test(input_shape, hidden_h_shape, hidden_c_shape)

    # Incorrect cell size != hidden size
    input_shape = correct_input_shape
    hidden_h_shape = correct_hidden_h_shape
    hidden_c_shape = update_shape(correct_hidden_c_shape, 0, bad_size)
    test(input_shape, hidden_h_shape, hidden_c_shape)


@pytest.mark.parametrize("LSTM", LSTMS)
def test_rnn_initial_hidden_state(LSTM):
    for mode in ["LSTM"]:
        rnn = LSTM(30, 20, 2)
        input = torch.randn(10, 32, 30)
        hidden = torch.zeros(2, 32, 20)

        if mode == "LSTM":
            hidden = (hidden, hidden)
        output1, hidden1 = rnn(input, hidden)
        output2, hidden2 = rnn(input)
        _equal(output1, output2)
        _equal(hidden1, hidden2)


@pytest.mark.parametrize("LSTM", LSTMS)
def test_projections_lstm_initial_hidden_state(LSTM):
    for bidir in [False, True]:
        rnn = LSTM(30, 20, 2, bidirectional=bidir, proj_size=10)
        num_dirs = 2 if bidir else 1
        input = torch.randn(10, 32, 30)
        hidden_h = torch.zeros(2 * num_dirs, 32, 10)
        hidden_c = torch.zeros(2 * num_dirs, 32, 20)
        hidden = (hidden_h, hidden_c)
        output1, hidden1 = rnn(input, hidden)
        output2, hidden2 = rnn(input)
        _equal(output1, output2)
        _equal(hidden1, hidden2)


@pytest.mark.parametrize("LSTM", LSTMS)
def test_cudnn_forward_exception(LSTM):
    rnns = [
        (LSTM(10, 20, batch_first=True), (torch.zeros(1, 2, 19), torch.zeros(1, 2, 19))),
        (
            LSTM(10, 20, batch_first=True, proj_size=10),
            (torch.zeros(1, 2, 19), torch.zeros(1, 2, 19)),
        ),
    ]
    x_wrong = torch.randn(2, 3, 3)
    x_right = torch.randn(2, 3, 10)
    for rnn, hidden in rnns:
        tc.assertRaisesRegex(RuntimeError, "Expected hidden.*size.*got", rnn, x_right, hidden)
        tc.assertRaisesRegex(
            RuntimeError, re.escape("input.size(-1) must be equal to input_size"), rnn, x_wrong
        )


@pytest.mark.parametrize("LSTM", LSTMS)
def test_RNN_input_size_zero(LSTM):
    for module in (LSTM,):
        for device in ["cpu"]:
            input = torch.zeros((5, 0, 3))
            rnn = module(input_size=3, hidden_size=4)
            outs = rnn(input)
            tc.assertEqual(outs[0].shape, torch.Size([5, 0, 4]))
            # Check that backward does not cause a hard error
            outs[0].sum().backward()


@pytest.mark.parametrize("LSTM", LSTMS)
def test_error_RNN_seq_len_zero(LSTM):
    # checking error message when RNN has seq_len = 0
    for module in (LSTM,):
        for bidirectional in [True, False]:
            for device in ["cpu"]:
                input = torch.ones(0, 10, 5)
                rnn = module(5, 6, bidirectional=bidirectional)
                with tc.assertRaisesRegex(
                    RuntimeError, "Expected sequence length to be larger than 0 in RNN"
                ):
                    rnn(input)


@pytest.mark.parametrize("LSTMCell", CELLS)
def test_RNN_cell_no_broadcasting(LSTMCell):
    def test(cell_module, input, hx, input_size, hidden_size):
        cell = cell_module(input_size, hidden_size)
        tc.assertRaises(RuntimeError, lambda: cell(input, hx))

    def test_all(hidden_size, bad_hx, good_hx, input_size, input):
        test(LSTMCell, input, (bad_hx, good_hx), input_size, hidden_size)
        test(LSTMCell, input, (good_hx, bad_hx), input_size, hidden_size)

    hidden_size = 20
    input_size = 10
    input = torch.randn(3, input_size)
    bad_hx = torch.randn(1, hidden_size)
    good_hx = torch.randn(3, hidden_size)

    # Test hidden/input batch size broadcasting
    test_all(hidden_size, bad_hx, good_hx, input_size, input)

    # Test hx's hidden_size vs module's hidden_size broadcasting
    bad_hx = torch.randn(3, 1)
    test_all(hidden_size, bad_hx, good_hx, input_size, input)

    # Test input's input_size vs module's input_size broadcasting
    bad_input = torch.randn(3, 1)
    test_all(hidden_size, good_hx, good_hx, input_size, bad_input)


@pytest.mark.parametrize("LSTMCell", CELLS)
def test_LSTM_cell(LSTMCell):
    # this is just a smoke test; these modules are implemented through
    # autograd so no Jacobian test is needed
    for bias in (True, False):
        input = torch.randn(3, 10)
        hx = torch.randn(3, 20)
        cx = torch.randn(3, 20)
        lstm = LSTMCell(10, 20, bias=bias)
        for _ in range(6):
            hx, cx = lstm(input, (hx, cx))

        (hx + cx).sum().backward()


@pytest.mark.parametrize("LSTMCell", CELLS)
def test_LSTM_cell_forward_input_size(LSTMCell):
    input = torch.randn(3, 11)
    hx = torch.randn(3, 20)
    cx = torch.randn(3, 20)
    lstm = LSTMCell(10, 20)
    tc.assertRaises(Exception, lambda: lstm(input, (hx, cx)))


@pytest.mark.parametrize("LSTMCell", CELLS)
def test_LSTM_cell_forward_hidden_size(LSTMCell):
    input = torch.randn(3, 10)
    hx = torch.randn(3, 21)
    cx = torch.randn(3, 20)
    lstm = LSTMCell(10, 20)
    tc.assertRaises(Exception, lambda: lstm(input, (hx, cx)))
    tc.assertRaises(Exception, lambda: lstm(input, (cx, hx)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="upstream: CUDA not available (m.cuda())")
@pytest.mark.parametrize("LSTM", LSTMS)
def test_partial_flat_weights(LSTM):
    import warnings

    input_size = 10
    hidden_size = 6
    num_layers = 2

    m = LSTM(input_size, hidden_size, num_layers)
    inp = torch.randn(3, 2, 10)
    out_expected = m(inp)
    # deletes an attribute of original LSTM
    weight_orig = m.weight_hh_l0
    del m.weight_hh_l0
    tc.assertFalse(hasattr(m, "weight_hh_l0"))
    # verifies that moving to CUDA with only some attributes defined
    # does not throw an error
    m.cuda()
    # recompute the weight and make sure that module can be used
    m.weight_hh_l0 = weight_orig.cuda()
    inp = inp.cuda()
    # otherwise, subsequent warnings will be hidden, and further tests rely on them
    warnings.simplefilter("always")
    _equal(m(inp)[0].cpu(), out_expected[0])
