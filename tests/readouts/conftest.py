"""Shared fixtures of the readout tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny heads run fastest on one intra-op thread; on a shared 2-core machine, extra
    threads mostly wait on each other (a 60-step overfit takes ~15x longer with 2)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
