"""loss.png, drawn at the end of every `train` (forecast/plots.py `loss_curve`, drawn by
losschart.py with Pillow): a PNG that PIL reads, 6 x 3.5 inches at 110 dpi, train and validation
in their colors, the best epoch marked where it lies, a log axis on which a geometric decay is a
straight line; and drawing it imports no matplotlib (whose import every train used to pay)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from helpers import subprocess_env
from PIL import Image

from lstmbyhand.forecast import losschart, plots

TRAIN, VAL, BEST = (
    losschart.COLORS["train"],
    losschart.COLORS["validation"],
    losschart.COLORS["best"],
)


def _pixels(path, color, tolerance: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the pixels within `tolerance` of `color`, legend excluded (its upper-right box)."""
    with Image.open(path) as image:
        a = np.asarray(image.convert("RGB")).astype(int)  # (H, W, 3)
    near = np.abs(a - np.array(color)).max(axis=2) <= tolerance
    near[:80, 430:] = False  # the legend
    y, x = np.nonzero(near)
    return x, y


@pytest.mark.parametrize("decades", [0.3, 6])  # within one decade, and many
def test_the_loss_curve_is_a_png_of_the_figure_with_both_losses_and_the_best(tmp_path, decades):
    history = [{"epoch": e, "train_loss": 10 ** (-decades * e / 30),
                "val_loss": 2 * 10 ** (decades * ((e - 16) / 15) ** 2 - decades)}
               for e in range(1, 31)]  # fmt: skip  # validation lowest at epoch 16
    plots.loss_curve(history, tmp_path / "loss.png")
    with Image.open(tmp_path / "loss.png") as image:
        assert image.format == "PNG" and image.size == (660, 385)
        assert [round(d) for d in image.info["dpi"]] == [110, 110]
    x_train, _ = _pixels(tmp_path / "loss.png", TRAIN)
    x_val, _ = _pixels(tmp_path / "loss.png", VAL)
    x_best, y_best = _pixels(tmp_path / "loss.png", BEST, tolerance=20)
    assert len(x_train) > 300 and len(x_val) > 300
    # the dotted line: one column, 15/29 of the way from epoch 1's pixels to epoch 30's
    first, last = x_train.min(), x_train.max()
    inside = (x_best >= first) & (x_best <= last) & (y_best < 330)  # not the labels
    x_best, y_best = x_best[inside], y_best[inside]
    column = np.bincount(x_best).argmax()
    assert abs(column - (first + (last - first) * 15 / 29)) <= 2
    assert np.ptp(y_best[x_best == column]) > 200  # spans the axis


def test_a_geometric_decay_is_a_straight_line_on_the_log_axis(tmp_path):
    history = [{"epoch": e, "train_loss": 10 ** (-e / 10), "val_loss": None} for e in range(1, 41)]
    plots.loss_curve(history, tmp_path / "log.png")
    x, y = _pixels(tmp_path / "log.png", TRAIN)
    columns = np.unique(x)[5:-5]  # away from the line's round ends
    mid = np.array([y[x == c].mean() for c in columns])
    fit = np.polyval(np.polyfit(columns, mid, 1), columns)
    assert np.abs(mid - fit).max() < 1.5  # straight: the axis is log10
    history[0]["train_loss"] = 0.0  # a zero: no log axis; the same decay curves
    plots.loss_curve(history, tmp_path / "linear.png")
    x, y = _pixels(tmp_path / "linear.png", TRAIN)
    columns = np.unique(x)[5:-5]
    mid = np.array([y[x == c].mean() for c in columns])
    assert np.abs(mid - np.polyval(np.polyfit(columns, mid, 1), columns)).max() > 20
    assert not _pixels(tmp_path / "linear.png", VAL)[0].size  # no validation: no orange line


def test_drawing_the_loss_curve_imports_no_matplotlib(tmp_path):
    code = (
        "import sys; from lstmbyhand.forecast import plots; "
        "plots.loss_curve([{'epoch': 1, 'train_loss': 1.0, 'val_loss': 2.0}], sys.argv[1]); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'torch')))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "l.png")], env=subprocess_env(),
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert (tmp_path / "l.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
