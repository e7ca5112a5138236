"""A `train`'s statistical fits, started in a child process while the parent imports torch.

    prefit.start(settings)     # cli/train.py, right after the arguments, before torch is imported

The network learns the residual of the statistical forecasts (model.py), so the epochs need them
first; but importing statsforecast and fitting AutoETS, AutoARIMA and AutoTheta needs no torch,
and importing torch and building the model needs no forecasts. `start` reads the data file (a
mistake in it is refused here, before torch is imported), prepares the series as `train` will
(`prepare.prepare`), and forks a child that makes every forecast `train` will ask of the fit:

    the base at the train and validation origins     (the network's inputs, `Prepared.inputs`)
    each used model's at the test origins             (what `evaluate` asks; `baselines.stored`)

and sends them back through a pipe. The first `Statistical` of that fit to miss a forecast waits
for them (`baselines.expect`) and computes in process whatever did not come: a child that failed,
was killed, or made other forecasts (the file changed in between: another fit key) leaves the run
to fit in process, as without it. The numbers are the same either way: the child runs the same
`Statistical` code on the same values (tested equal to the in-process fit).

Only where it is safe and can help (else `start` only refuses a data file train would refuse):
Linux (fork; before torch, so no torch threads exist to be forked), one process (not under
torchrun), torch not imported yet, a base (`--base` not none), one series (no --id, one --target),
a regular file of at most `LIMIT` bytes (it is read twice: here and by train), and no cached
forecasts of the fit (baselines.py's cache: a later run reads those instead).
`LSTMBYHAND_PREFIT=0` turns it off (the fits are then made in process, as before).
"""

from __future__ import annotations

import atexit
import os
import pickle
import signal
import sys
import warnings

from lstmbyhand.forecast import baselines
from lstmbyhand.forecast.config import TrainSettings
from lstmbyhand.forecast.prepare import Prepared

LIMIT = 4 << 20  # bytes: a file of one series above this is not read twice
SWITCH = "LSTMBYHAND_PREFIT"  # "0": no child


def start(s: TrainSettings) -> None:
    """Refuse what train would refuse first (settings, the data file), then, where it can help
    (see the module docstring), fork the child that makes the fit's forecasts."""
    from lstmbyhand.forecast.data import readable

    s.check()
    readable(s.data)
    if not _wanted(s):
        return
    from lstmbyhand.forecast.panel import read_panel
    from lstmbyhand.forecast.prepare import prepare

    covariates = tuple(s.past_covariates + s.future_covariates)
    panel = read_panel(s.data, s.target, s.time, s.id, s.fill, covariates)  # pool.load_panel's
    if panel.layout != "single":
        return
    prep = prepare(s, panel.series[0])  # prepare_pool's for one series
    path = baselines.cache_file(prep.statistical.key)
    if path is not None and path.is_file():
        return
    child = Child(prep)
    if child.pid:
        baselines.expect(prep.statistical.key, child.collect)


def _wanted(s: TrainSettings) -> bool:
    """The conditions of the module docstring that need no reading of the file."""
    if sys.platform != "linux" or "torch" in sys.modules or s.model.base == "none":
        return False
    if os.environ.get(SWITCH, "").strip() == "0":
        return False
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 or s.id is not None or "," in s.target:
        return False
    try:
        return os.path.isfile(s.data) and os.path.getsize(s.data) <= LIMIT
    except OSError:
        return False


def make(prep: Prepared) -> baselines.Known:
    """Every forecast a `train` of `prep` asks of its fit (see the module docstring)."""
    stat, values = prep.statistical, prep.series.values
    for part in ("train", "val"):
        if len(prep.origins[part]):
            stat.base(prep.base, values, prep.origins[part], prep.outputs)
    baselines.test_forecasts(prep)
    return stat.known


class Child:
    """The forked child making `make(prep)`; `collect` waits for its forecasts."""

    def __init__(self, prep: Prepared) -> None:
        self.key = prep.statistical.key
        self.pid, self.fd = 0, -1
        read, write = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError:  # no processes left: fit in process
            os.close(read)
            os.close(write)
            return
        if pid == 0:
            os.close(read)
            _child(prep, write)  # never returns
        os.close(write)
        self.pid, self.fd = pid, read
        atexit.register(self.stop)

    def collect(self) -> baselines.Known:
        """The child's forecasts, once it has sent them and exited; {} when it failed."""
        if not self.pid:
            return {}
        try:
            with os.fdopen(self.fd, "rb") as pipe:
                self.fd = -1
                payload = pipe.read()
        except OSError:
            payload = b""
        ok = self._reap() == 0
        try:
            key, made = pickle.loads(payload) if ok and payload else (None, {})
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError):
            return {}
        return made if key == self.key and isinstance(made, dict) else {}

    def stop(self) -> None:
        """At exit: a child not collected is killed (the run stopped before it needed it)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
            self._reap()

    def _reap(self) -> int | None:
        """Wait for the child to end: its exit code (None: already reaped elsewhere)."""
        pid, self.pid = self.pid, 0
        try:
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        except ChildProcessError:
            return None


def _child(prep: Prepared, write: int) -> None:
    """In the child: make the forecasts, send (fit key, forecasts), exit; any failure exits 1
    silently (the parent then fits in process). Ctrl-C / SIGTERM end it at once."""
    code = 1
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_WRONLY)  # nothing of the child's reaches the terminal
        os.dup2(null, 1)
        os.dup2(null, 2)
        warnings.simplefilter("ignore")
        prep.statistical.cached = {}  # checked by the parent: no cache file
        made = make(prep)
        data = pickle.dumps((prep.statistical.key, made), protocol=pickle.HIGHEST_PROTOCOL)
        with os.fdopen(write, "wb") as pipe:
            pipe.write(data)
        code = 0
    except BaseException:  # noqa: BLE001 -- whatever happens here, the parent falls back
        pass
    finally:
        os._exit(code)
