"""lstmbyhand: an LSTM built by hand, every gate written out.

from lstmbyhand import LSTM, LSTMCell      # drop-ins for torch.nn.LSTM / nn.LSTMCell
from lstmbyhand import LSTMbyHand, dataLoader   # the seed's teaching model and data
"""

from lstmbyhand.gates import Gates, gate_views, lstm_cell
from lstmbyhand.layers import LSTM, LSTMCell
from lstmbyhand.seed import LSTMbyHand, dataLoader
from lstmbyhand.sequence import GateTrace

__version__ = "0.1.0"

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
