"""Ctrl-C (SIGINT) and SIGTERM stop a command cleanly: never in the middle of writing a checkpoint.

    with STOP:                        # SIGINT and SIGTERM now raise KeyboardInterrupt ...
        ...
        with STOP.deferred():         # ... except in here: they wait until the block ends
            write_checkpoint()
    STOP.received                     # ("SIGTERM", 143) or None

`STOP` is one object for the process: the CLI enters it around the whole command and `train`
around the whole training (start-up included); nested entries share it, only the outermost
installs and restores the handlers. The first signal raises KeyboardInterrupt (once, however many
follow); later ones, while the command is already stopping, are only counted, so a second Ctrl-C or
SIGTERM never cuts the clean exit short. Outside the main thread (where Python cannot install
handlers) this does nothing.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Turn SIGINT/SIGTERM into one KeyboardInterrupt, with sections where it is held back."""

    def __init__(self) -> None:
        self.received: tuple[str, int] | None = None
        self.count = 0
        self._hold = 0
        self._pending = False
        self._depth = 0
        self._old: dict[int, Any] = {}  # the handlers signal.signal returned

    def _handler(self, signum: int, frame) -> None:
        self.count += 1
        if self.received is not None:  # already stopping: let the clean exit finish
            return
        self.received = (signal.Signals(signum).name, 128 + signum)
        if self._hold:
            self._pending = True
        else:
            raise KeyboardInterrupt

    def __enter__(self) -> StopSignals:
        self._depth += 1
        if self._depth == 1:
            self.received, self.count, self._pending = None, 0, False
            if threading.current_thread() is threading.main_thread():
                for sig in SIGNALS:
                    self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth == 0:
            for sig, old in self._old.items():
                signal.signal(sig, old)
            self._old.clear()

    def exit_code(self) -> int:
        """128 + the signal that stopped the command (130 for Ctrl-C when none was recorded)."""
        return self.received[1] if self.received else 128 + signal.SIGINT

    def name(self) -> str:
        return self.received[0] if self.received else "SIGINT"

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


STOP = StopSignals()
