"""Every figure the CLI writes: loss curves, forecasts, gate heatmaps. No window, no backend switch.

Figures are built with matplotlib's object API (`matplotlib.figure.Figure`), which renders without
pyplot: importing this module or drawing with it leaves the caller's backend and pyplot alone.
The file format follows the path's extension, among those matplotlib writes (`plot_format`); a
path without one gets PNG; any other extension is refused with the list.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter

from lstmbyhand.errors import UserError
from lstmbyhand.forecast.files import atomic_write, check_output, write_output


def formats() -> dict[str, str]:
    """Extension -> description of every format matplotlib can write."""
    return dict(FigureCanvasBase.get_supported_filetypes())


def plot_format(path: str | Path, flag: str = "--plot") -> str:
    """The format for `path`'s extension (PNG without one), or a `UserError` listing the choices."""
    suffix = Path(str(path)).suffix.lower().lstrip(".")
    if not suffix or str(path) == "-":
        return "png"
    if suffix not in formats():
        raise UserError(
            f"{flag} {path}: matplotlib cannot write .{suffix} files; use one of "
            f"{', '.join('.' + f for f in sorted(formats()))}"
        )
    return suffix


def check_plot(path: str, flag: str = "--plot", protected: Iterable[Path] = ()) -> None:
    """Refuse a plot path before any work: unknown format, a command's input, a run's file."""
    check_output(path, flag, protected)
    plot_format(path, flag)


def _render(fig: Figure, path: str | Path) -> bytes:
    """The figure's file; cropped to what it shows unless it has a layout engine (which already
    placed everything inside: one drawing instead of the crop's two)."""
    buf = io.BytesIO()
    crop = None if fig.get_layout_engine() is not None else "tight"
    fig.savefig(buf, format=plot_format(path), dpi=110, bbox_inches=crop)
    return buf.getvalue()


def _save(
    fig: Figure, path: str | Path, protected: Iterable[Path] = (), run_file: bool = False
) -> None:
    """A plot the user named: written as `files.write_output` does (never over an input); a run's
    own file (run_file): atomically, in place."""
    if run_file:
        atomic_write(Path(path), _render(fig, path))
    else:
        write_output(str(path), _render(fig, path), "--plot", protected)


class _PlainLog(LogFormatter):
    """Log-axis tick labels as plain numbers (0.4, 1, 2): the default's 10^k labels are math
    text, and its parser is built on first use (a cost every `train` paid for loss.png)."""

    def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
        return f"{x:g}"


def loss_curve(history: list[dict], path: str | Path) -> None:
    """Train and validation loss per epoch (log scale when all are positive), the best marked."""
    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(6, 3.5), layout="tight")  # drawn once, every label inside
    ax = fig.subplots()
    train = [r["train_loss"] for r in history]
    val = [r["val_loss"] for r in history if r["val_loss"] is not None]  # none: --val-fraction 0
    ax.plot(epochs, train, label="train")
    if val:
        ax.plot(epochs, val, label="validation")
        best = min(history, key=lambda r: r["val_loss"])
        ax.axvline(best["epoch"], color="grey", ls=":", label=f"best (epoch {best['epoch']})")
    if min(train + val) > 0:  # a log axis needs positive values (a constant series has 0)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(_PlainLog())
        ax.yaxis.set_minor_formatter(_PlainLog(labelOnlyBase=False))  # as matplotlib sets them
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE (scaled)")
    ax.legend()
    _save(fig, path, run_file=True)


def forecast(
    time, values, future_time, future, title: str, path: str | Path, protected: Iterable[Path] = ()
) -> None:
    """History (N,) and forecast (S,) against their time stamps."""
    forecasts([(title, time, values, future_time, future, None)], path, protected)


def forecasts(panels: list[tuple], path: str | Path, protected: Iterable[Path] = ()) -> None:
    """One axis per series, stacked: (title, time (N,), history (N,), future time (S,), forecast
    (S,), band) with band None or (label, lower (S,), upper (S,)): the interval, shaded."""
    fig = Figure(figsize=(8, 3.5 * len(panels)))
    axes = np.atleast_1d(fig.subplots(len(panels), 1))
    for ax, (title, time, values, future_time, future, band) in zip(axes, panels, strict=True):
        ax.plot(time, values, label="history", color="C0")
        ax.plot(
            np.concatenate([time[-1:], future_time]),
            np.concatenate([values[-1:], future]),
            label="forecast",
            color="C1",
            ls="--",
        )
        if band is not None:
            label, lower, upper = band
            ax.fill_between(future_time, lower, upper, color="C1", alpha=0.25, label=label)
        ax.set_title(title)
        ax.legend()
    fig.autofmt_xdate()
    _save(fig, path, protected)


def gate_heatmaps(
    traces: dict[str, np.ndarray],
    title: str,
    path: str | Path,
    protected: Iterable[Path] = (),
    run_file: bool = False,
) -> None:
    """One heatmap (H units x T steps) per gate or state; traces: name -> (T, H)."""
    names = list(traces)
    fig = Figure(figsize=(8, 1.6 * len(names) + 0.6))
    axes = fig.subplots(len(names), 1, sharex=True)
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        a = traces[name].T  # (H, T)
        signed = name in ("candidate", "cell", "hidden")
        lim = max(float(np.abs(a).max()), 1e-9) if signed else 1.0
        im = ax.imshow(a, aspect="auto", interpolation="nearest",
                       cmap="RdBu_r" if signed else "viridis",
                       vmin=-lim if signed else 0.0, vmax=lim)  # fmt: skip
        ax.set_ylabel(f"{name}\nunit")
        fig.colorbar(im, ax=ax, pad=0.01)
    np.atleast_1d(axes)[-1].set_xlabel("time step in the window (oldest → newest)")
    np.atleast_1d(axes)[0].set_title(title)
    _save(fig, path, protected, run_file)
