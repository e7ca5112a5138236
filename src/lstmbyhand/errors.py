"""Errors the command line turns into one line on stderr instead of a traceback.

`UserError` is a mistake the user can fix (bad file, bad column, bad setting): exit code 2.
`TrainingStopped` is a run that had to stop (loss became NaN, interrupted): exit code 1 or 128 + signal.
Both subclass the built-in errors the Python API promises, so library callers can catch
`ValueError` / `RuntimeError` without knowing about the CLI.
"""

from __future__ import annotations


class UserError(ValueError):
    """A mistake the user can fix: printed as one line, exit code 2, no traceback."""


class TrainingStopped(RuntimeError):
    """Training stopped early on purpose; the last good checkpoint is kept. `exit_code` for the CLI."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
