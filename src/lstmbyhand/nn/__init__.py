"""lstmbyhand.nn: the LSTM itself. Imports torch and nothing else of lstmbyhand's.

gates.py     one step, every gate named: the specification
sequence.py  the readable loop over time (autograd); what LSTM.trace runs
bptt.py      the same loop with the hand-derived backward, in PyTorch ops; chooses the kernels
native.py    loads the compiled twin of bptt.py's kernels (csrc/, C++, CPU)
ops.py       those kernels as torch.library operators (fake kernels, autograd, vmap, double backward)
onnx.py      torch.onnx.export: each layer direction as one node of ONNX's own LSTM operator
variants.py  the cell's variants declared once: one step forward and its derivative (docs/variants.md)
variant_bptt.py, variant_ops.py   the variants' hand BPTT over time and their torch.library operators
layers.py    LSTM, LSTMCell: torch.nn.LSTM's contract (layers, directions, packing, projection)
"""

from lstmbyhand.nn.gates import Gates, gate_views, lstm_cell
from lstmbyhand.nn.layers import LSTM, LSTMCell
from lstmbyhand.nn.sequence import GateTrace

__all__ = ["LSTM", "LSTMCell", "GateTrace", "Gates", "gate_views", "lstm_cell"]
