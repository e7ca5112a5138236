"""Every figure the CLI writes: loss curves, forecasts, gate heatmaps. PNG files, no window."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lstmbyhand.forecast.rundir import atomic_write  # noqa: E402


def _save(fig, path: str | Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write(Path(path), buf.getvalue())


def loss_curve(history: list[dict], path: str | Path) -> None:
    """Train and validation loss per epoch (log scale), the best epoch marked."""
    epochs = [r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs, [r["train_loss"] for r in history], label="train")
    ax.plot(epochs, [r["val_loss"] for r in history], label="validation")
    best = min(history, key=lambda r: r["val_loss"])
    ax.axvline(best["epoch"], color="grey", ls=":", label=f"best (epoch {best['epoch']})")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE (scaled)")
    ax.legend()
    _save(fig, path)


def forecast(time, values, future_time, future, title: str, path: str | Path) -> None:
    """History (N,) and forecast (S,) against their time stamps."""
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(time, values, label="history", color="C0")
    ax.plot(
        np.concatenate([time[-1:], future_time]),
        np.concatenate([values[-1:], future]),
        label="forecast",
        color="C1",
        ls="--",
    )
    ax.set_title(title)
    ax.legend()
    fig.autofmt_xdate()
    _save(fig, path)


def gate_heatmaps(traces: dict[str, np.ndarray], title: str, path: str | Path) -> None:
    """One heatmap (H units x T steps) per gate or state; traces: name -> (T, H)."""
    names = list(traces)
    fig, axes = plt.subplots(len(names), 1, figsize=(8, 1.6 * len(names) + 0.6), sharex=True)
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
    _save(fig, path)
