"""A split whose reader augments is cached as K views per example (K in the key), or refused:
one cached view per example would silently freeze a single augmentation."""

import functools
from pathlib import Path

import pytest
import torch

from backbones.build import build_backbone
from probing import cache as fc
from probing import extract
from probing.probe import Probe, run
from readouts.optim import paper_optimizer
from tasks import kinds
from tasks.real.images import ImageFileDataset


class Jitter(torch.utils.data.Dataset):
    """n fixed 5-frame clips; in training mode every access adds a random brightness offset drawn
    from torch's RNG (what the real readers' crops, flips and windows do)."""

    def __init__(self, n: int, train: bool):
        self.n, self.augments = n, train

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        video = torch.randint(0, 200, (5, 16, 16, 3), dtype=torch.uint8,
                              generator=torch.Generator().manual_seed(i))
        if self.augments:
            video = video + torch.randint(0, 50, (), dtype=torch.uint8)
        return {"video": video, "index": torch.tensor(i), "label": torch.tensor(i % 2)}


@pytest.fixture(scope="module")
def setup():
    backbone = build_backbone(size="tiny", tokenizer="tiny", image_size=16, num_frames=5)
    task = kinds.classification("jitter", {"train": Jitter(4, True), "val": Jitter(2, False)}, 2,
                                image_task=False, num_frames=5,
                                head_kwargs={"width": 16, "num_heads": 2, "num_queries": 1})
    return backbone, task


@pytest.fixture(scope="module")
def cached(setup, tmp_path_factory):
    """The train split cached with 2 views (a module's tests share the extraction)."""
    root = tmp_path_factory.mktemp("cache")
    entry, created = extract.ensure_entry(*setup, "train", 100, [1], root, views=2)
    assert created
    return root, entry


def _all(entry, block):
    feats, items = zip(*(entry.load_shard(s, block) for s in range(len(entry.shard_sizes))))
    return torch.cat(feats), {k: torch.cat([it[k] for it in items]) for k in items[0]}


def test_an_augmenting_split_without_views_is_refused(setup, tmp_path):
    backbone, task = setup
    with pytest.raises(extract.ConfigError, match="Probe.cache_views"):
        extract.ensure_entry(backbone, task, "train", 100, [1], tmp_path)
    assert not list(tmp_path.glob("*"))                            # nothing was written


def test_k_views_are_cached_reproducibly_and_keyed(setup, cached, tmp_path):
    backbone, task = setup
    entry = cached[1]
    assert entry.num_examples == 8
    feats, items = _all(entry, 1)
    assert torch.bincount(items["view"]).tolist() == [4, 4]
    assert items["index"].tolist() == [0, 1, 2, 3] * 2
    assert items["feature_spans"].shape == (8, 2, 2)             # V-WALT: [0, 1), [1, 5)
    by_view = {v: feats[items["view"] == v] for v in range(2)}
    assert not torch.allclose(by_view[0], by_view[1])            # views differ ...
    again, _ = extract.ensure_entry(backbone, task, "train", 100, [1], tmp_path, views=2)
    torch.testing.assert_close(_all(again, 1)[0], feats, rtol=0, atol=0)   # ... reproducibly
    keys = {k: extract.cache_key(backbone, task, "train", 100, [1], views=k) for k in (2, 3)}
    assert keys[2].base_digest != keys[3].base_digest and keys[3].preprocessing["views"] == 3
    # A split that does not augment ignores K: one row per example, one key.
    val = {k: extract.cache_key(backbone, task, "val", 100, [1], views=k) for k in (None, 3)}
    assert val[None] == val[3] and "views" not in val[3].preprocessing


def test_dataset_identity_of_an_augmenting_split_is_stable_and_leaves_the_rng_alone():
    dataset = Jitter(6, True)
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first = fc.dataset_identity("jitter", "train", dataset)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert fc.dataset_identity("jitter", "train", dataset) == first


def test_a_probe_trains_on_cached_views(setup, cached, tmp_path):
    backbone, task = setup
    optimizer = functools.partial(paper_optimizer, warmup=0)
    probe = Probe(backbone=backbone, task=task, block=1, timestep=100, steps=3, batch_size=4,
                  eval_batch_size=4, use_cache=True, cache_dir=str(cached[0]),
                  cache_views=2, optimizer=optimizer)
    result = run(probe, tmp_path / "run", device="cpu")
    assert result.status == "ok" and result.feature_source == "cache"
    assert result.backbone_batches == 1                          # train found cached; val extracted
    refused = Probe(**{**probe.__dict__, "cache_views": None})
    with pytest.raises(extract.ConfigError, match="augments"):
        run(refused, tmp_path / "refused", device="cpu")


def test_real_readers_augment_in_training_only():
    samples = [(Path("unread.jpg"), 0)]
    assert ImageFileDataset(samples, 32, train=True).augments
    assert not ImageFileDataset(samples, 32, train=False).augments
