"""Same seed -> identical bytes; different seeds -> different clips; batch-independent."""

import numpy as np
import pytest
import torch

from tasks.synthetic import analogs
from tasks.synthetic.dataset import clip_generator


def _items(name, seeds, size=32, frames=5):
    gens = [clip_generator(name, "train", 0, s) for s in seeds]
    return analogs.render_items(analogs.get(name), gens, size, frames)


@pytest.mark.parametrize("name", ["objects", "motion", "point_tracks", "box_tracks", "pose", "depth"])
def test_same_seed_same_bytes_in_any_batch(name):
    alone = _items(name, [3])[0]
    batched = _items(name, [7, 3, 5])[1]
    again = _items(name, [3])[0]
    for key in alone:
        assert alone[key].tobytes() == again[key].tobytes(), key
        assert alone[key].tobytes() == batched[key].tobytes(), key


def test_different_seeds_differ():
    a, b = _items("depth", [1, 2])
    assert not np.array_equal(a["video"], b["video"])
    g1, g2 = clip_generator("x", "train", 0, 1), clip_generator("x", "train", 1, 1)
    assert not torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))
