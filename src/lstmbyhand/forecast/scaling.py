"""What the network sees: windows in a scale that does not depend on the series' level.

For a window x (K, W) with last value x_W and targets y (K, H), three choices (`--scaling`):

    global   x' = (x - μ) / σ            y' = (y - μ) / σ            μ, σ: mean, std of the train part
    last     x' = (x - x_W) / σ_Δ        y' = (y - x_W) / σ_Δ        σ_Δ: std of train's steps y_t - y_{t-1}
    window   x' = (x - m_x) / s_x        y' = (y - m_x) / s_x        m_x: the window's own mean,
                                                                      s_x = max(its std, σ_Δ)

and the inverse maps the network's y' back: y = y' σ + μ, y = x_W + y' σ_Δ, y = m_x + y' s_x.
`global` fails once a trending series leaves the training range (the network never saw such
inputs and cannot output such targets); `last` predicts the change from the last value, so a
network that outputs 0 is exactly the naive forecast; `window` rescales every window on its own.
The floor σ_Δ keeps a nearly flat window from being blown up to huge values. Only the train part
is used to fit μ, σ, σ_Δ. A zero σ_Δ or σ (below 1e-12 of the largest |y|) falls back to σ, then
mean |y|, then 1. A scaler whose statistics are not finite is refused (`UserError`), when fitted
and when read back from a run's config.json.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from lstmbyhand.errors import UserError
from lstmbyhand.forecast.config import SCALINGS


def _first_positive(size: float, *candidates: float) -> float:
    """The first spread that is not zero next to the data's size (max |y|) nor so small that
    dividing by it overflows (below data.SMALLEST, 1e-150: subnormal spreads); 1 if all are."""
    for c in candidates:
        if c > 1e-12 * size and c > 1e-150:
            return float(c)
    return 1.0


@dataclass(frozen=True)
class Scaler:
    """One of `SCALINGS`, with the statistics fitted on the training part."""

    kind: str
    center: float
    scale: float

    @classmethod
    def fit(cls, kind: str, train: np.ndarray) -> Scaler:
        """Fit on the training part only (train (n_train,))."""
        if kind not in SCALINGS:
            raise ValueError(f"expected scaling in {SCALINGS}, got {kind!r}")
        train = np.asarray(train, dtype=np.float64)
        size = float(np.abs(train).max()) if len(train) else 0.0
        level = (float(np.std(train)), float(np.abs(train).mean()))  # fallbacks, same units
        if kind in ("last", "window"):  # scale: σ_Δ (for `window`, the floor of s_x)
            steps = np.diff(train) if len(train) > 1 else np.zeros(1)
            scaler = cls(kind, 0.0, _first_positive(size, float(np.std(steps)), *level))
        else:
            scaler = cls(kind, float(np.mean(train)), _first_positive(size, *level))
        return scaler.checked("the training part")

    def reference(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The shift and scale per window, (K, 1) each, for raw inputs x (K, W)."""
        return reference(self.kind, x, self.center, self.scale)

    def transform(self, x: np.ndarray, y: np.ndarray | None = None):
        """x (K, W) [, y (K, H)] -> x' (K, W) [, y' (K, H)] in the network's units."""
        shift, scale = self.reference(x)
        xs = (x - shift) / scale
        return xs if y is None else (xs, (y - shift) / scale)

    def inverse(self, ys: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Network outputs y' (K, H) for raw inputs x (K, W) -> forecasts in original units (K, H)."""
        shift, scale = self.reference(x)
        return ys * scale + shift

    def to_dict(self) -> dict:
        return asdict(self)

    def checked(self, where: str) -> Scaler:
        """Itself, if usable: a known kind, a finite center and a finite positive scale."""
        if self.kind not in SCALINGS or not (
            math.isfinite(self.center) and math.isfinite(self.scale) and self.scale > 0
        ):
            raise UserError(
                f"the scaler from {where} is not usable (kind {self.kind!r}, center "
                f"{self.center}, scale {self.scale}); the values overflow: rescale the column"
            )
        return self

    @classmethod
    def from_dict(cls, d: dict, where: str = "config.json") -> Scaler:
        return cls(str(d["kind"]), float(d["center"]), float(d["scale"])).checked(where)


def reference(
    kind: str, x: np.ndarray, center: float | np.ndarray, scale: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`Scaler.reference` for windows x (K, W) whose scalers may differ: center and scale one
    number, or one per window (K,) (windows of many series at once, pool.Windows)."""
    K = x.shape[0]
    c = np.broadcast_to(np.reshape(center, (-1, 1)), (K, 1))
    s = np.broadcast_to(np.reshape(scale, (-1, 1)), (K, 1))
    if kind == "global":
        return np.array(c), np.array(s)
    if kind == "last":
        return x[:, -1:], np.array(s)
    return x.mean(axis=1, keepdims=True), np.maximum(x.std(axis=1), s[:, 0])[:, None]
