"""Quantile forecasts: the pinball loss and coverage by hand, statsforecast's intervals, the head."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from statsforecast import StatsForecast
from statsforecast.models import AutoARIMA, AutoETS

from lstmbyhand.errors import UserError
from lstmbyhand.forecast.baselines import Statistical
from lstmbyhand.forecast.config import ModelConfig, TrainSettings
from lstmbyhand.forecast.intervals import pairs, pinball, score, statistical_quantiles
from lstmbyhand.forecast.model import Forecaster, select, zero_head
from lstmbyhand.forecast.train import loss_fn

pytestmark = pytest.mark.usefixtures("one_thread")
LEVELS = [0.1, 0.5, 0.9]


def test_pinball_coverage_and_width_by_hand():
    y = np.array([[1.0], [2.0], [3.0], [4.0]])  # (K=4, H=1)
    f = np.array([[[0.0, 1.0, 2.0]], [[2.5, 3.0, 3.5]], [[1.0, 3.0, 3.0]], [[4.0, 5.0, 9.0]]])
    # L_q = max(q e, (q-1) e), e = y - f:
    #   y=1: e = 1, 0, -1    -> 0.1, 0, 0.1
    #   y=2: e = -.5, -1, -1.5 -> .45, .5, .15
    #   y=3: e = 2, 0, 0     -> .2, 0, 0
    #   y=4: e = 0, -1, -5   -> 0, .5, .5
    by_hand = np.array([[0.1, 0, 0.1], [0.45, 0.5, 0.15], [0.2, 0, 0], [0, 0.5, 0.5]])
    np.testing.assert_allclose(pinball(y, f, LEVELS)[:, 0], by_hand, atol=1e-15)
    result = score(y, f, LEVELS)
    assert result["quantile_loss"] == pytest.approx(by_hand.mean())
    # inside [q0.1, q0.9]: y=1 in [0,2] yes; 2 in [2.5,3.5] no; 3 in [1,3] yes (edge); 4 in [4,9] yes
    assert result["80"]["coverage"] == pytest.approx(0.75)
    assert result["80"]["width"] == pytest.approx((2 + 1 + 2 + 5) / 4)
    assert pairs([0.05, 0.1, 0.5, 0.9, 0.95]) == [(0, 4, 90), (1, 3, 80)]


def test_torch_pinball_loss_is_the_same_function():
    y = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    f = torch.tensor([[[0.0, 1.0, 2.0]], [[2.5, 3.0, 3.5]], [[1.0, 3.0, 3.0]], [[4.0, 5.0, 9.0]]])
    got = loss_fn(f, y, torch.tensor(LEVELS)).item()
    assert got == pytest.approx(score(y.numpy(), f.numpy(), LEVELS)["quantile_loss"], rel=1e-6)


def test_statsforecast_intervals_are_statsforecasts_own_cross_validation():
    """Fitted once before the first test origin, then run forward: cross_validation(refit=False)
    with level=[80], from a code path we did not write."""
    t = np.arange(36)
    values = 20 + 3 * np.sin(2 * np.pi * t / 4) + np.random.default_rng(3).normal(0, 1, 36)
    windows, season = 5, 4
    df = pd.DataFrame({"unique_id": "s", "ds": t, "y": values})
    models = [AutoETS(season_length=season), AutoARIMA(season_length=season)]
    cv = (
        StatsForecast(models=models, freq=1)
        .cross_validation(h=1, df=df, n_windows=windows, step_size=1, refit=False, level=[80])
        .sort_values("cutoff")
    )
    test_start = len(values) - windows
    ours = statistical_quantiles(Statistical(values[:test_start], season), values,
                                 np.arange(test_start - 1, len(values) - 1), 1, LEVELS)  # fmt: skip
    for name in ("AutoETS", "AutoARIMA"):
        want = cv[[f"{name}-lo-80", name, f"{name}-hi-80"]].to_numpy()  # (K, 3)
        np.testing.assert_allclose(ours[name][:, 0, :], want, rtol=1e-6)


def test_untrained_quantile_model_is_its_base_at_every_level():
    config = ModelConfig(window=4, hidden=3, base="median", quantiles=LEVELS)
    model = Forecaster(config).eval()
    x = torch.randn(5, model.inputs)
    out = model(x)  # (B, O, Q)
    assert out.shape == (5, 1, 3)
    np.testing.assert_array_equal(out.detach().numpy(), x[:, -1:, None].expand(5, 1, 3).numpy())


def test_selection_zeroes_only_the_median_rows_of_the_head():
    config = ModelConfig(window=4, hidden=3, base="median", quantiles=LEVELS)
    torch.manual_seed(0)
    model = Forecaster(config)
    torch.nn.init.normal_(model.head.weight)
    torch.nn.init.normal_(model.head.bias)
    best = {k: v.detach().clone() for k, v in model.state_dict().items()}
    zeroed = zero_head(config, best)
    assert torch.count_nonzero(zeroed["head.weight"][1]) == 0 and zeroed["head.bias"][1] == 0
    torch.testing.assert_close(zeroed["head.weight"][[0, 2]], best["head.weight"][[0, 2]])
    x = torch.randn(40, model.inputs)
    y = x[:, -1:]  # the base is perfect here: the network cannot beat it
    kept = select(config, best, x, y)
    torch.testing.assert_close(kept["head.bias"], zeroed["head.bias"])


@pytest.mark.parametrize(
    "levels, expected",
    [([0.1, 0.9], "include 0.5"), ([0.9, 0.5, 0.1], "increasing"), ([0.5, 1.0], "between 0 and 1")],
)
def test_bad_quantiles_are_refused(levels, expected):
    with pytest.raises(UserError, match=expected):
        TrainSettings("x.csv", "y", quantiles=levels).check()
