"""Shared fixture of the synthetic-world tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Render and fit with one torch thread: with other jobs on a 2-core machine, two torch
    threads ran these small ops several times slower than one (the dataset builders render
    with one thread per process for the same reason; see tasks/synthetic/dataset.py)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
