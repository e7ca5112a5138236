"""The Python API refuses bad shapes and arguments with "expected X, got Y" (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lstmbyhand.forecast.config import ModelConfig
from lstmbyhand.forecast.model import Forecaster
from lstmbyhand.forecast.optim import Adam
from lstmbyhand.forecast.windows import windows


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(0, 7), min_size=0, max_size=4))
def test_forecaster_input_shapes(shape):
    torch.manual_seed(0)
    model = Forecaster(ModelConfig(window=5, horizon=2, hidden=3, base="none", multistep="direct"))
    x = torch.zeros(tuple(shape))
    if len(shape) == 2 and shape[1] == 5:
        assert model(x).shape == (shape[0], 2)
    else:
        with pytest.raises((ValueError, RuntimeError), match="expected"):
            model(x)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 30),
    at=st.lists(st.integers(-5, 40), min_size=1, max_size=5),
    window=st.integers(1, 6),
    horizon=st.integers(1, 4),
)
def test_windows_origins(n, at, window, horizon):
    values = np.arange(n, dtype=float)
    at = np.array(at)
    if at.min() >= window - 1 and at.max() + horizon < n:
        x, y = windows(values, at, window, horizon)
        assert x.shape == (len(at), window) and y.shape == (len(at), horizon)
    else:
        with pytest.raises(ValueError, match="expected origins"):
            windows(values, at, window, horizon)


def test_adam_rejects_bad_lr_and_state():
    p = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="expected lr > 0, got 0"):
        Adam([p], lr=0)
    opt = Adam([p])
    with pytest.raises(ValueError, match=r"expected m.0 of shape \(3,\), got \(4,\)"):
        opt.load({"m.0": torch.zeros(4), "v.0": torch.zeros(3)}, opt.settings())
