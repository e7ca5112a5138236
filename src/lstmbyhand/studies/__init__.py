"""lstmbyhand.studies: papers about the LSTM, redone in small with lstmbyhand.nn.

odyssey.py   "LSTM: A Search Space Odyssey" (Greff et al. 2017): eight variants of the cell, one task

A study imports lstmbyhand.nn and nothing else of ours (tests/test_layout.py holds it); the command
line (`lstmbyhand odyssey`) runs it, prints its table and draws its plot.
"""
