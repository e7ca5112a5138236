"""lstmbyhand: an LSTM built by hand, every gate written out.

from lstmbyhand import LSTM, LSTMCell      # drop-ins for torch.nn.LSTM / nn.LSTMCell
from lstmbyhand import LSTMbyHand, dataLoader   # the seed's teaching model and data

Three wings: `lstmbyhand.nn` (the LSTM; imports only torch), `lstmbyhand.forecast` (the forecasting
tool, built on nn) and `lstmbyhand.cli` (the command line; nothing imports it). The names below are
loaded on first use, so that `lstmbyhand --help` and `import lstmbyhand.errors` do not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"  # the one place the version is written; pyproject.toml reads it from here

_PUBLIC = {  # name -> module that defines it
    "LSTM": "lstmbyhand.nn.layers",
    "LSTMCell": "lstmbyhand.nn.layers",
    "GateTrace": "lstmbyhand.nn.sequence",
    "Gates": "lstmbyhand.nn.gates",
    "gate_views": "lstmbyhand.nn.gates",
    "lstm_cell": "lstmbyhand.nn.gates",
    "LSTMbyHand": "lstmbyhand.seed",
    "dataLoader": "lstmbyhand.seed",
}

__all__ = [
    "LSTM",
    "LSTMCell",
    "LSTMbyHand",
    "dataLoader",
    "GateTrace",
    "Gates",
    "gate_views",
    "lstm_cell",
    "__version__",
]

if TYPE_CHECKING:
    from lstmbyhand.nn.gates import Gates, gate_views, lstm_cell
    from lstmbyhand.nn.layers import LSTM, LSTMCell
    from lstmbyhand.nn.sequence import GateTrace
    from lstmbyhand.seed import LSTMbyHand, dataLoader


def __getattr__(name: str) -> object:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'lstmbyhand' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
