"""Statistical forecasts from Nixtla's statsforecast: AutoETS, AutoARIMA, AutoTheta.

Each model is fitted once, on values y_0 .. y_{n-1} (for the test split: everything before it,
train + validation), with the season m as its season length. Its forecast from origin t is then

    ŷ_{t+1..t+H} = model.forward(y_0 .. y_t, H)

with the fitted parameters kept (statsforecast's `forward`: the states are filtered over the given
history, nothing is re-estimated), so a forecast from t uses only data up to t -- the same as
statsforecast's `cross_validation(h=H, step_size=1, refit=False)` from the fit's end on.

They serve twice: as baselines in `evaluate`, and as the base the forecaster can learn the residual
of (see `model.py`): `combine` joins them into one base, the point-wise median by default.
An origin whose history is too short for a model (AutoARIMA with a season needs more than one
season) leaves that model out of the combination there; with none left, the base is the naive
forecast ŷ_{t+h} = y_t.

Every forecast is kept, keyed by the SHA-256 of the history it was made from: asked again, it is
read back, not recomputed. `stored` gives what a run keeps of them (after computing the forecasts
`evaluate` will ask for: each used model's from the test origins at the horizon), `adopt` puts a
run's back into freshly built models of a fit on the same values with the same season, so that
`evaluate` neither imports statsforecast nor refits. A history not among them (another data file,
or the network's own forecasts fed back in) is forecast by the model, fitted on first use as
before: the numbers are the same either way.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from lstmbyhand.forecast.config import STATISTICAL

if TYPE_CHECKING:  # prepare.py imports this module
    from lstmbyhand.forecast.prepare import Prepared


def _model(name: str, season: int):
    from statsforecast import models  # imported here: ~1 s, only runs that use it pay

    return getattr(models, name)(season_length=max(int(season), 1))


class Statistical:
    """The statsforecast models, each fitted on first use on one stretch `train` of a series."""

    def __init__(self, train: np.ndarray, season: int) -> None:
        self.train = np.asarray(train, dtype=np.float64)  # (n,): y_0 .. y_{n-1}
        self.season = int(season)
        self.fitted: dict[str, object] = {}
        self.known: dict[tuple[str, int], dict[str, np.ndarray]] = {}  # (model, H) -> key -> (H,)

    @property
    def key(self) -> str:
        """What the fit depends on: the values fitted on and the season (a SHA-256, hex)."""
        return _digest(self.train, f"season {self.season}")

    def model(self, name: str):
        """`name` (one of STATISTICAL) fitted on `train` with season length `season` (0: none)."""
        if name not in self.fitted:
            with warnings.catch_warnings():  # statsforecast warns on divisions it handles itself
                warnings.simplefilter("ignore")
                self.fitted[name] = _model(name, self.season).fit(self.train)
        return self.fitted[name]

    def forecast(self, name: str, history: np.ndarray, horizon: int) -> np.ndarray | None:
        """The model's forecast (H,) after `history`, or None if the history is too short for it."""
        history = np.ascontiguousarray(history, dtype=np.float64)
        known = self.known.setdefault((name, horizon), {})
        key = _digest(history)
        if key not in known:
            out = self._forward(name, history, horizon)
            known[key] = out if out is not None else np.full(horizon, np.nan)
        out = known[key]
        return None if np.isnan(out).any() else out.copy()

    def _forward(self, name: str, history: np.ndarray, horizon: int) -> np.ndarray | None:
        model = self.model(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out = model.forward(history, horizon)["mean"]
            except (ValueError, IndexError, NotImplementedError):
                return None
        out = np.asarray(out, dtype=np.float64)
        return out if out.shape == (horizon,) and np.isfinite(out).all() else None

    def at(
        self, values: np.ndarray, origins: np.ndarray, horizon: int, names=STATISTICAL
    ) -> dict[str, np.ndarray]:
        """Each model's forecasts (K, H) from the origins (K,); NaN rows where it has none."""
        out = {}
        for name in names:
            rows = [self.forecast(name, values[: t + 1], horizon) for t in origins]
            out[name] = np.stack([r if r is not None else np.full(horizon, np.nan) for r in rows])
        return out

    def base(self, how: str, values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
        """The base `how` (see `combine`) from the origins (K,): (K, H)."""
        names = STATISTICAL if how in ("median", "mean") else (how,)
        return combine(self.at(values, origins, horizon, names), how, values[origins])

    def used(self) -> tuple[str, ...]:
        """The models that have forecast something (here, or in the run the forecasts came from)."""
        return tuple(n for n in STATISTICAL if any(m == n for m, _ in self.known))


def stored(members: Iterable[Prepared]) -> tuple[dict[str, np.ndarray], dict]:
    """What a run keeps of its prepared series' models. Each used model's forecasts from the test
    origins at the horizon are computed first (what `evaluate` asks for); then every known
    forecast is returned: one array (K, H) per fit, model
    and H, named "i.MODEL.H" (i: the fit's place in "fits"), and as JSON the history keys of its
    rows, {"fits": {fit key: {array name: [history key, ...]}}}. A series that used no model
    (`--base none`) adds nothing, and nothing is fitted for it here."""
    arrays: dict[str, np.ndarray] = {}
    fits: dict[str, dict[str, list[str]]] = {}
    for member in members:
        stat, test = member.statistical, member.origins.get("test")
        if test is not None and len(test):
            stat.at(member.series.values, test, member.horizon, stat.used())
        entry = fits.setdefault(stat.key, {})
        for (name, h), known in sorted(stat.known.items()):
            array = f"{list(fits).index(stat.key)}.{name}.{h}"
            arrays[array] = np.stack(list(known.values()))  # (K, H)
            entry[array] = list(known)
    return arrays, {"fits": {k: v for k, v in fits.items() if v}}


def check_stored(arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Raise ValueError unless `arrays`, `meta` have the layout `stored` writes."""
    fits = meta.get("fits")
    if not isinstance(fits, dict) or not all(isinstance(v, dict) for v in fits.values()):
        raise ValueError("expected {'fits': {fit key: {array: [keys]}}}")
    named = {a: keys for entry in fits.values() for a, keys in entry.items()}
    if set(named) != set(arrays):
        raise ValueError(f"expected the arrays {sorted(named)}, got {sorted(arrays)}")
    for array, keys in named.items():
        _, name, h = array.split(".") if array.count(".") == 2 else ("", "", "")
        rows = arrays[array]
        ok = isinstance(keys, list) and all(isinstance(k, str) for k in keys) and h.isdigit()
        if not ok or name not in STATISTICAL or rows.shape != (len(keys), int(h)):
            raise ValueError(f"expected {array} to be forecasts of one model, got {rows.shape}")


def adopt(saved: tuple[dict[str, np.ndarray], dict] | None, members: Iterable[Prepared]) -> None:
    """Give each prepared series' models the stored forecasts (see `stored`; checked by
    `check_stored`) of a fit on its very values with its season, if `saved` has one; None (the
    run stored none) changes nothing."""
    if saved is None:
        return
    arrays, meta = saved
    for stat in (m.statistical for m in members):
        for array, keys in meta["fits"].get(stat.key, {}).items():
            _, name, h = array.split(".")
            known = stat.known.setdefault((name, int(h)), {})
            known.update(zip(keys, arrays[array], strict=True))


def _digest(values: np.ndarray, *extra: str) -> str:
    """SHA-256 (hex) of float64 values, then each of `extra`."""
    h = hashlib.sha256(np.ascontiguousarray(values, dtype=np.float64).tobytes())
    for text in extra:
        h.update(f"|{text}".encode())
    return h.hexdigest()


def combine(forecasts: dict[str, np.ndarray], how: str, last: np.ndarray) -> np.ndarray:
    """One base (K, H) from forecasts {name: (K, H)}: their point-wise median, or their mean for
    `how` = "mean" (a single model: itself), over the models that have a forecast there; the
    naive forecast `last` (K,) = y_t where none has."""
    stack = np.stack(list(forecasts.values()))  # (models, K, H)
    with warnings.catch_warnings():  # all-NaN columns: filled with the naive forecast below
        warnings.simplefilter("ignore", RuntimeWarning)
        base = np.nanmedian(stack, axis=0) if how == "median" else np.nanmean(stack, axis=0)
    return np.where(np.isnan(base), last[:, None], base)  # (K, H)
