"""Test-suite settings: one torch thread per test process; property tests explore new examples
locally and replay a fixed set in CI."""

import atexit
import os
import shutil
import tempfile

import pytest
import torch
from helpers import torch_threads
from hypothesis import settings

# One intra-op thread in every test process (each xdist worker already has a core of its own): on the
# 2-core machine two workers with two threads each spend most of their CPU spinning in OpenMP's
# waits (measured: tests/nn/test_bptt.py's gradchecks take 104 s of CPU on 2 threads, 19 s on 1).
# Tests of the threaded kernels set their thread count themselves (helpers.torch_threads).
torch.set_num_threads(1)

# The statistical forecasts' cache (forecast/baselines.py) in a folder of this session's own, never the
# user's ~/.cache: xdist's workers inherit it from the controller, which loads this file first, so a fit
# made by one test is reused by the next train of the same series (identical numbers: the cache stores
# the fit's float64 forecasts) and no run depends on what an earlier session left behind. Tests of the
# cache itself set their own folder.
if "LSTMBYHAND_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="lstmbyhand-test-cache-")
    os.environ["LSTMBYHAND_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def one_thread():
    """Tiny models: one torch thread is fastest, and much faster on a busy machine."""
    with torch_threads(1):
        yield


# The longest tests (5-40 s of CPU each on the 2-core machine) first, so that xdist hands them out at
# the start instead of one of them running alone at the end. Only tests without module-scoped
# fixtures: a fixture shared with tests left in place would be set up twice.
LONGEST = (
    "tests/forecast/test_distributed.py::",
    "tests/upstream/test_modules_lstm.py::test_gradgrad[",
    "tests/upstream/test_modules_lstm.py::test_grad[",
    "tests/nn/test_bptt.py::test_hand_backward_passes_gradcheck[",
    "tests/forecast/test_train.py::test_sig",
)


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: not item.nodeid.startswith(LONGEST))  # stable: the rest in order
