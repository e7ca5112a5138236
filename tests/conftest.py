"""Test-suite settings: property tests explore new examples locally and replay a fixed set in CI."""

import os

import pytest
from helpers import torch_threads
from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def one_thread():
    """Tiny models: one torch thread is fastest, and much faster on a busy machine."""
    with torch_threads(1):
        yield
