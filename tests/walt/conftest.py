"""Shared tiny models for the walt tests (CPU, seconds)."""

import pytest
import torch

from walt.tokenizer import Tokenizer
from walt.transformer import WALT


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Seeded; one intra-op thread: these tensors are tiny, and on a shared 2-core machine
    extra threads only contend (a tiny forward pass goes from ~0.1 s to ~2 s)."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_walt():
    """Tiny WALT on a 5 x 8 x 8 latent grid (STW windows 5 x 4 x 4), non-zero gates so every
    block changes the stream."""
    torch.manual_seed(0)
    return WALT.from_size("tiny", zero_init_gates=False).eval()


@pytest.fixture
def tiny_tokenizer():
    torch.manual_seed(0)
    return Tokenizer.from_size("tiny").eval()
