"""Shared fixture of the synthetic-world tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Render and fit with one torch thread: the renderer's ops are too small to gain from
    intra-op threads, and on a shared 2-core machine two threads ran several times slower
    than one (the dataset builders render with one thread per process for the same reason)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
