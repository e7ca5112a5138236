"""Ctrl-C (SIGINT) and SIGTERM stop training cleanly: never in the middle of writing a checkpoint.

    signals = StopSignals()
    with signals:                     # SIGINT and SIGTERM now raise KeyboardInterrupt ...
        ...
        with signals.deferred():      # ... except in here: they wait until the block ends
            write_checkpoint()
    signals.received                  # ("SIGTERM", 143) or None

Outside the main thread (where Python cannot install handlers) this does nothing.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class StopSignals:
    """Turn SIGINT/SIGTERM into KeyboardInterrupt, with sections where they are held back."""

    def __init__(self) -> None:
        self.received: tuple[str, int] | None = None
        self._hold = 0
        self._pending = False
        self._old: dict[int, object] = {}

    def _handler(self, signum: int, frame) -> None:
        self.received = (signal.Signals(signum).name, 128 + signum)
        if self._hold:
            self._pending = True
        else:
            raise KeyboardInterrupt

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    @contextmanager
    def deferred(self):
        self._hold += 1
        try:
            yield
        finally:
            self._hold -= 1
            if not self._hold and self._pending:
                self._pending = False
                raise KeyboardInterrupt
