"""loss.png, drawn at the end of every `train` (forecast/plots.py `loss_curve`): a PNG that PIL
reads, the figure's size at 110 dpi (drawn once by the layout engine, not cropped), its log axis
labelled in plain numbers (no math text, whose parser every train used to build)."""

from __future__ import annotations

import matplotlib.mathtext
import pytest
from PIL import Image

from lstmbyhand.forecast import plots


def _no_math_text(*args, **kwargs):
    raise AssertionError("math text drawn")


@pytest.mark.parametrize("decades", [0.3, 6])  # within one decade (minor labels), and many
def test_the_loss_curve_is_a_png_of_the_figure_without_math_text(tmp_path, monkeypatch, decades):
    monkeypatch.setattr(matplotlib.mathtext.MathTextParser, "parse", _no_math_text)
    history = [{"epoch": e, "train_loss": 10 ** (-decades * e / 30), "val_loss": 10 ** (-decades * e / 35)}
               for e in range(1, 31)]  # fmt: skip
    plots.loss_curve(history, tmp_path / "loss.png")
    with Image.open(tmp_path / "loss.png") as image:
        assert image.format == "PNG" and image.size == (660, 385)  # 6 x 3.5 inches at 110 dpi
