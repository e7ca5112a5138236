"""Model selection on validation: the network is kept only if it beats its base by more than chance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lstmbyhand.forecast.config import ModelConfig
from lstmbyhand.forecast.model import KEEP_T, Forecaster, diebold_mariano, select

CONFIG = ModelConfig(window=3, horizon=1, hidden=2, base="median")


def shifted_model(c: float) -> Forecaster:
    """A network whose output is its base + c (head weights 0, bias c)."""
    model = Forecaster(CONFIG)
    with torch.no_grad():
        model.head.bias.fill_(c)
    return model


def test_diebold_mariano_by_hand():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4))  # window of 3, then the base's one forecast
    y = x[:, 3:] + 0.5 + 0.3 * rng.normal(size=(40, 1))  # the base is 0.5 too low
    d = ((x[:, 3] - y[:, 0]) ** 2) - ((x[:, 3] + 0.4 - y[:, 0]) ** 2)
    want = d.mean() / (d.std(ddof=1) / np.sqrt(len(d)))
    got = diebold_mariano(shifted_model(0.4), torch.tensor(x).float(), torch.tensor(y).float())
    assert got == pytest.approx(want, rel=1e-4)
    assert want > KEEP_T


def test_select_keeps_a_clearly_better_network_and_else_the_base():
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.normal(size=(40, 4))).float()
    better = shifted_model(0.4)
    best = {k: v.clone() for k, v in better.state_dict().items()}
    y_off = x[:, 3:] + 0.5  # the base misses by 0.5: the network (+0.4) is clearly better
    assert select(CONFIG, best, x, y_off) is best
    y_exact = x[:, 3:] + 0.01 * torch.tensor(rng.normal(size=(40, 1))).float()  # base ~ right
    chosen = select(CONFIG, best, x, y_exact)
    assert torch.equal(chosen["head.bias"], torch.zeros(1))
    assert torch.equal(chosen["lstm.weight_hh_l0"], best["lstm.weight_hh_l0"])
    base = Forecaster(CONFIG)
    base.load_state_dict(chosen)
    assert torch.equal(base.eval()(x), x[:, 3:])  # the head at zero: exactly the base
