"""Noise ensembles (Probe.noise_draws, probing/extract.py block_features): K = 1 is today's
single draw bit for bit; K > 1 is the mean over draws seeded per example and draw, and a
different cache entry."""

import pytest
import torch

from backbones.build import build_backbone
from probing import extract
from tasks.synthetic.builders import motion_task


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import os
    os.environ.setdefault("WALT_PROBE_SYNTHETIC_CACHE", str(tmp_path_factory.mktemp("synthetic")))
    backbone = build_backbone(size="tiny", variant="video", tokenizer="tiny", image_size=32,
                              num_frames=5, seed=0, device="cpu")
    task = motion_task(num_train=4, num_val=4, image_size=32, num_frames=5,
                       head_kwargs={"width": 32, "num_heads": 2})
    batch = torch.utils.data.default_collate([task.split("val")[i] for i in range(3)])
    return backbone, task, batch


def test_one_draw_is_the_single_draw_bit_for_bit(setup):
    backbone, _, batch = setup
    seeds = extract.noise_seeds(batch, 0)
    with torch.no_grad():
        today = backbone.features(batch["video"], 300, [1, 3], seeds=seeds)
        one = extract.block_features(backbone, batch["video"], 300, [1, 3], seeds, noise_draws=1)
    for b in (1, 3):
        assert one[b].dtype == today[b].dtype and torch.equal(one[b], today[b])


def test_k_draws_are_the_mean_of_seeded_draws(setup):
    backbone, _, batch = setup
    seeds = extract.noise_seeds(batch, 0)
    with torch.no_grad():
        three = extract.block_features(backbone, batch["video"], 300, [2], seeds, noise_draws=3)[2]
        draws = [backbone.features(batch["video"], 300, [2], seeds=extract.draw_seeds(seeds, k))[2]
                 for k in range(3)]
    torch.testing.assert_close(three, torch.stack(draws).float().mean(0), rtol=1e-6, atol=1e-6)
    assert not torch.allclose(draws[0], draws[1])  # the draws differ, so averaging does something
    # Draw seeds never meet another example's or another noise_seed's single-draw seeds.
    assert extract.draw_seeds(seeds, 1).min() > extract.noise_seeds(batch, 10_000).max()
    with pytest.raises(extract.ConfigError, match="noise_draws"):
        extract.block_features(backbone, batch["video"], 300, [2], seeds, noise_draws=0)


def test_draws_are_part_of_the_cache_key_and_one_draw_keeps_old_keys(setup):
    backbone, task, _ = setup
    one = extract.cache_key(backbone, task, "val", 300, [2])
    assert one == extract.cache_key(backbone, task, "val", 300, [2], noise_draws=1)
    assert "noise_draws" not in one.preprocessing  # entries written before ensembles still match
    four = extract.cache_key(backbone, task, "val", 300, [2], noise_draws=4)
    assert four != one and four.preprocessing["noise_draws"] == 4
