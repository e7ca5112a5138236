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

Across runs, the forecasts of a fit are also kept in the user's cache (`cache_dir`: the folder
$LSTMBYHAND_CACHE_DIR, else $XDG_CACHE_HOME/lstmbyhand/statistical, else
~/.cache/lstmbyhand/statistical; LSTMBYHAND_CACHE_DIR="" turns it off), one file per fit, named by
its key and the versions of statsforecast and the libraries its fits run on: a later `train` of the
same values with the same season reads them back and neither imports statsforecast nor fits. They
are statsforecast's own forecasts of that very fit, so the numbers are the same either way. A cache
file is written atomically and checksummed; one that is damaged, another fit's or unreadable is
ignored (the forecasts are computed again), and one that cannot be written is left out: the cache
only saves time, it never fails a run.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterable
from functools import cache
from pathlib import Path
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
        self.cached: dict[tuple[str, int], dict[str, np.ndarray]] | None = None  # read on a miss

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
            if self.cached is None:
                self.cached = recall(self.key)
            out = self.cached.get((name, horizon), {}).get(key)
            if out is None:
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
    (`--base none`) adds nothing, and nothing is fitted for it here. Each fit's forecasts are
    also added to the user's cache (`remember`)."""
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
        remember(stat.key, stat.known, stat.cached)
    return arrays, {"fits": {k: v for k, v in fits.items() if v}}


CACHE_ENV = "LSTMBYHAND_CACHE_DIR"
_LIBRARIES = ("statsforecast", "statsmodels", "scipy", "numpy")  # what a fit's numbers depend on


def cache_dir() -> Path | None:
    """The folder of the cached forecasts (see the module's docstring); None: no cache."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen is not None:
        return Path(chosen).expanduser() if chosen.strip() else None
    try:
        root = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    except RuntimeError:  # no home folder to be found: no cache
        return None
    return Path(root) / "lstmbyhand" / "statistical"


@cache
def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    def one(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "none"

    return " ".join(f"{name}={one(name)}" for name in _LIBRARIES)


def _cache_file(key: str) -> Path | None:
    folder = cache_dir()
    return (
        None if folder is None else folder / f"{_digest(np.zeros(0), key, _versions())}.safetensors"
    )


def recall(key: str) -> dict[tuple[str, int], dict[str, np.ndarray]]:
    """The cached forecasts of the fit `key`, {(model, H): {history key: (H,)}}; {} when there
    are none, or the file is damaged, another fit's, of other library versions or unreadable."""
    path = _cache_file(key)
    if path is None or not path.is_file():
        return {}
    from lstmbyhand.errors import UserError
    from lstmbyhand.forecast.rundir import load_tensors  # torch: only when there is a file

    try:
        tensors, meta = load_tensors(path, "cached statistical forecasts", key)
        arrays = {k: v.numpy() for k, v in tensors.items()}
        if meta.get("versions") != _versions() or set(meta) != {"versions", "fits"}:
            return {}
        check_stored(arrays, meta)
        if set(meta["fits"]) != {key}:
            return {}
        entry = meta["fits"][key]
    except (UserError, OSError, ValueError, TypeError, KeyError):
        return {}
    out: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    for array, keys in entry.items():
        _, name, h = array.split(".")
        out[(name, int(h))] = dict(zip(keys, arrays[array].astype(np.float64), strict=True))
    return out


def remember(
    key: str,
    known: dict[tuple[str, int], dict[str, np.ndarray]],
    cached: dict[tuple[str, int], dict[str, np.ndarray]] | None = None,
) -> None:
    """Add the forecasts `known` of the fit `key` to its cache file (atomic); nothing when they
    are all there already, or the cache is off or cannot be written. `cached`: the file's
    forecasts as already read (`Statistical.cached`); None: read here."""
    import torch

    from lstmbyhand.errors import UserError
    from lstmbyhand.forecast.rundir import save_tensors

    path = _cache_file(key)
    if path is None or not any(known.values()):
        return
    merged = recall(key) if cached is None else {mh: dict(rows) for mh, rows in cached.items()}
    if all(k in merged.get(mh, {}) for mh, rows in known.items() for k in rows):
        return
    for mh, rows in known.items():
        merged.setdefault(mh, {}).update(rows)
    filled = {f"0.{name}.{h}": rows for (name, h), rows in sorted(merged.items()) if rows}
    entry = {array: list(rows) for array, rows in filled.items()}
    tensors = {
        array: torch.from_numpy(np.stack(list(rows.values())).astype(np.float64))
        for array, rows in filled.items()
    }  # (K, H) each
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_tensors(path, tensors, {"versions": _versions(), "fits": {key: entry}}, key)
    except (UserError, OSError):
        pass


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
