"""The feature-cache key never serves a stale entry: change anything that changes the activations
(the checkpoint's bytes, t, the noise seed or draws, the blocks, the split, the data, the storage
dtype, the number of augmented views, the backbone's protocol) and the next probe extracts a
new entry holding exactly the features the backbone computes on the fly; change nothing and the
stored entry is reused."""

import contextlib
import dataclasses

import pytest
import torch

from backbones.build import build_backbone
from probing import extract
from probing.probe import Probe
from tasks import kinds
from walt.checkpoint import save_module

KW = dict(size="tiny", tokenizer="tiny", image_size=16, num_frames=5, reuse=False)
BASE = dict(split="train", timestep=300, blocks=[1, 3], dtype="float32", noise_seed=0, views=None,
            noise_draws=1)


class Clips(torch.utils.data.Dataset):
    """n fixed 5-frame 16 x 16 clips drawn from `seed`; `augments` adds a random brightness
    offset per access (torch's RNG), as the real readers' crops and flips do."""

    def __init__(self, n: int = 3, seed: int = 0, augments: bool = False):
        self.n, self.seed, self.augments = n, seed, augments

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(1000 * self.seed + i)
        video = torch.randint(0, 200, (5, 16, 16, 3), dtype=torch.uint8, generator=g)
        if self.augments:
            video = video + torch.randint(0, 50, (), dtype=torch.uint8)
        return {"video": video, "index": torch.tensor(i), "label": torch.tensor(i % 2)}


def _task(train=None, val=None):
    return kinds.classification("clips", {"train": train or Clips(seed=0), "val": val or Clips(seed=1)},
                                2, image_task=False, num_frames=5,
                                head_kwargs={"width": 16, "num_heads": 2, "num_queries": 1})


def _checkpointed(folder, seed):
    """A backbone loaded from checkpoint files in `folder`, the WALT's weights drawn from `seed`
    (rewriting the same path, as a user retraining into one folder does)."""
    source = build_backbone(**KW, seed=seed)
    tok = save_module(source.tokenizer, folder / "tok.safetensors")
    walt = save_module(source.walt, folder / "walt.safetensors")
    return build_backbone(**KW, tokenizer_checkpoint=str(tok), walt_checkpoint=str(walt))


def _served(entry, block):
    """(features (n, ...) in example order, items) of one block of an entry, all shards."""
    parts = [entry.load_shard(s, block) for s in range(len(entry.shard_sizes))]
    feats = torch.cat([f for f, _ in parts])
    items = {k: torch.cat([it[k] for _, it in parts]) for k in parts[0][1]}
    return feats, items


def _on_the_fly(backbone, dataset, timestep, block, noise_seed=0, noise_draws=1):
    """What a probe without the cache computes: seed = index + NOISE_STRIDE * noise_seed, the
    mean over draws seeded + k * DRAW_STRIDE (the documented contract of probing/extract.py)."""
    batch = torch.utils.data.default_collate([dataset[i] for i in range(len(dataset))])
    seeds = batch["index"].long() + extract.NOISE_STRIDE * noise_seed
    draws = [backbone.features(batch["video"], timestep, [block],
                               seeds=seeds + extract.DRAW_STRIDE * k)[block]
             for k in range(noise_draws)]
    return torch.stack(draws).mean(0)


def _ensure(backbone, task, root, args):
    return extract.ensure_entry(backbone, task, args["split"], args["timestep"], args["blocks"],
                                root, dtype=args["dtype"], noise_seed=args["noise_seed"],
                                batch_size=2, views=args["views"], noise_draws=args["noise_draws"])


# name -> (what changes in BASE, a new backbone?, a new task?)
CHANGES = {
    "timestep": dict(timestep=700),
    "noise_seed": dict(noise_seed=1),
    "noise_draws": dict(noise_draws=2),
    "blocks": dict(blocks=[2]),
    "split": dict(split="val"),
    "dtype": dict(dtype="float16"),
}


@pytest.fixture(scope="module")
def backbone():
    return build_backbone(**KW)


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_changed_extraction_setting_extracts_a_new_entry(backbone, tmp_path, change):
    task = _task()
    old, created = _ensure(backbone, task, tmp_path, BASE)
    assert created
    args = {**BASE, **CHANGES[change]}
    new, created = _ensure(backbone, task, tmp_path, args)
    assert created and new.path != old.path, f"a probe with another {change} was served the old entry"
    block = args["blocks"][0]
    feats, items = _served(new, block)
    want = _on_the_fly(backbone, task.split(args["split"]), args["timestep"], block,
                       args["noise_seed"], args["noise_draws"])
    assert feats.dtype == extract.fc.DTYPES[args["dtype"]]
    assert items["index"].tolist() == list(range(len(want)))
    tol = 1e-2 if args["dtype"] == "float16" else 1e-5
    torch.testing.assert_close(feats.float(), want, rtol=tol, atol=tol)
    if change != "dtype":  # the old entry's features were wrong for the new setting
        stale = _served(old, BASE["blocks"][0])[0]
        assert stale.shape != want.shape or not torch.allclose(stale, want, atol=1e-3)


def test_a_rewritten_checkpoint_is_not_served_its_predecessors_features(tmp_path):
    before = _checkpointed(tmp_path, seed=0)
    task = _task()
    old, _ = _ensure(before, task, tmp_path / "cache", BASE)
    after = _checkpointed(tmp_path, seed=1)                       # same paths, new weights
    new, created = _ensure(after, task, tmp_path / "cache", BASE)
    assert created and new.path != old.path
    want = _on_the_fly(after, task.split("train"), BASE["timestep"], 1)
    torch.testing.assert_close(_served(new, 1)[0], want, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(_served(old, 1)[0], want, atol=1e-3)


@pytest.mark.parametrize("what", ["data", "video_route", "variant"])
def test_new_data_or_another_backbone_protocol_extracts_a_new_entry(backbone, tmp_path, what):
    task = _task()
    old, _ = _ensure(backbone, task, tmp_path, BASE)
    other_bb, other_task = backbone, task
    if what == "data":                                             # regenerated, same length
        other_task = _task(train=Clips(seed=5))
    elif what == "video_route":
        other_bb = build_backbone(**KW, video_route="frames")
    else:
        other_bb = build_backbone(**KW, variant="image", video_route="clip", repeat_images=True)
    new, created = _ensure(other_bb, other_task, tmp_path, BASE)
    assert created and new.path != old.path
    want = _on_the_fly(other_bb, other_task.split("train"), BASE["timestep"], 1)
    torch.testing.assert_close(_served(new, 1)[0], want, rtol=1e-5, atol=1e-5)


def test_augmented_views_are_part_of_the_key(backbone, tmp_path):
    task = _task(train=Clips(augments=True))
    args = {**BASE, "views": 1}
    one, created = _ensure(backbone, task, tmp_path, args)
    two, created_two = _ensure(backbone, task, tmp_path, {**args, "views": 2})
    assert created and created_two and one.path != two.path
    assert (one.num_examples, two.num_examples) == (3, 6)
    assert _served(two, 1)[1]["view"].tolist() == [0, 0, 0, 1, 1, 1]


def test_the_same_settings_reuse_the_entry_and_a_block_subset_is_served_from_it(backbone, tmp_path):
    task = _task()
    entry, created = _ensure(backbone, task, tmp_path, {**BASE, "blocks": [3, 1, 2]})
    assert created and entry.blocks == (1, 2, 3)
    for blocks in ([1, 2, 3], [2], [3, 1]):
        again, created = _ensure(backbone, task, tmp_path, {**BASE, "blocks": blocks})
        assert not created and again.path == entry.path
    # The key of a rebuilt, identical backbone is the same (nothing random in it).
    again, created = _ensure(build_backbone(**KW), _task(), tmp_path, BASE)
    assert not created and again.path == entry.path
    # A block beyond the stored set is a new entry; what is stored is never truncated.
    bigger, created = _ensure(backbone, task, tmp_path, {**BASE, "blocks": [4]})
    assert created and bigger.path != entry.path


@pytest.mark.parametrize("field, value", [("timestep", 700), ("cache_dtype", "bfloat16"),
                                          ("noise_seed", 2), ("noise_draws", 2)])
def test_each_probe_entry_field_reaches_the_key(backbone, tmp_path, field, value):
    """Probe -> ensure_probe_entry passes every entry field on (none silently defaulted)."""
    probe = Probe(backbone=backbone, task=_task(), block=1, timestep=300, cache_dir=str(tmp_path),
                  cache_dtype="float32", eval_batch_size=2)
    base, created = extract.ensure_probe_entry(probe, "train", [1])
    assert created
    changed = dataclasses.replace(probe, **{field: value})
    entry, created = extract.ensure_probe_entry(changed, "train", [1])
    assert created and entry.path != base.path
    stored = entry.manifest["key"]
    got = {"timestep": stored["timestep"], "cache_dtype": stored["preprocessing"]["dtype"],
           "noise_seed": stored["preprocessing"]["noise_seed"],
           "noise_draws": stored["preprocessing"].get("noise_draws", 1)}
    assert got[field] == value


class Pinned(Clips):
    fingerprint = "clips-v1"       # a dataset that names its own version (no bytes hashed)


def test_the_key_of_a_fixed_configuration_does_not_drift(backbone):
    """Entries on disk are found by this digest: a change in how the key is built (a renamed
    field, a dropped setting, another stride) silently re-extracts every user's cache, or worse,
    pairs old entries with new settings. If deliberate, bump cache.FORMAT_VERSION and update."""
    task = _task(train=Pinned(), val=Pinned(augments=True))
    fake = type("Fake", (), {"fingerprint": "fp-0"})()
    plain = extract.cache_key(fake, task, "train", 300, [3, 1])
    assert plain.blocks == (1, 3) and plain.folder_name.startswith(plain.base_digest)
    assert plain.base_digest == "949c831176fd13a6"
    views = extract.cache_key(fake, task, "val", 300, [1], views=2, noise_draws=3, noise_seed=4,
                              dtype="bfloat16")
    assert views.base_digest == "76d40cd21c80bd92"


def test_views_and_indices_are_checked_with_named_errors(backbone):
    task = _task(train=Clips(augments=True))
    for bad in (None, 0):
        with pytest.raises(extract.ConfigError, match=r"split 'train' augments its items \(Clips"):
            extract.cache_key(backbone, task, "train", 300, [1], views=bad)
    assert extract.cache_key(backbone, task, "train", 300, [1], views="2").preprocessing["views"] == 2
    assert not extract.augments(object()) and extract.augments(Clips(augments=1))
    with pytest.raises(extract.ConfigError, match="no 'index' key"):
        extract.noise_seeds({"video": torch.zeros(1)}, 0)
    seeds = extract.noise_seeds({"index": [3, 4]}, 2)
    assert seeds.dtype == torch.long and seeds.tolist() == [3 + 2 * 1_000_003, 4 + 2 * 1_000_003]


def test_the_defaults_are_float16_storage_noise_seed_0_and_one_draw(backbone, tmp_path):
    """ensure_entry and cache_key without settings: what Probe's defaults mean."""
    task = _task()
    entry, created = extract.ensure_entry(backbone, task, "train", 300, [2], tmp_path)
    assert created and entry.manifest["key"] == extract.cache_key(backbone, task, "train", 300, [2]).to_json()
    assert entry.manifest["key"]["preprocessing"] == {
        "dtype": "float16", "noise": "fixed-per-index", "noise_seed": 0, "noise_stride": 1_000_003}
    feats, _ = _served(entry, 2)
    assert feats.dtype == torch.float16
    torch.testing.assert_close(feats.float(), _on_the_fly(backbone, task.split("train"), 300, 2),
                               rtol=1e-2, atol=1e-2)


def test_a_committed_entry_is_read_without_the_lock(backbone, tmp_path, monkeypatch):
    """A sweep's trials read one entry at once: reading must not serialise on the extract lock."""
    task = _task()
    entry, _ = _ensure(backbone, task, tmp_path, BASE)

    def no_lock(root, key):
        raise AssertionError("a reader of a committed entry took the extract lock")
    monkeypatch.setattr(extract.fc, "entry_lock", no_lock)
    again, created = _ensure(backbone, task, tmp_path, BASE)
    assert not created and again.path == entry.path


def test_an_entry_committed_while_waiting_for_the_lock_is_reused(backbone, tmp_path, monkeypatch):
    """Two extractors of one entry: the one that waited for the lock reads the other's entry
    instead of extracting it again (in-process version of test_cache.py's two processes)."""
    task, passes = _task(), []
    real_extract, real_lock = extract.extract, extract.fc.entry_lock

    def counted(*args, **kwargs):
        passes.append(1)
        return real_extract(*args, **kwargs)

    @contextlib.contextmanager
    def lock_won_by_another(root, key):
        real_extract(backbone, task, key, root, batch_size=2)    # the other process's work
        with real_lock(root, key):
            yield
    monkeypatch.setattr(extract, "extract", counted)
    monkeypatch.setattr(extract.fc, "entry_lock", lock_won_by_another)
    entry, created = _ensure(backbone, task, tmp_path, BASE)
    assert not created and passes == [] and entry.num_examples == 3


def _stored(root, blocks, **over):
    """A committed entry of a fixed key with `blocks` (2 examples, zeros)."""
    key = extract.fc.CacheKey(**{**dict(backbone="fp", timestep=100, dataset="d/train/n=2/x",
                                        split="train", preprocessing={"dtype": "float32"},
                                        blocks=blocks), **over})
    with extract.fc.CacheWriter(root, key, dtype="float32") as writer:
        writer.add({b: torch.zeros(2, 1, 1, 1, 4) for b in key.blocks}, {"index": torch.arange(2)})
        return writer.commit(), key


def test_the_entry_holding_a_block_is_found_whatever_else_shares_its_base(tmp_path):
    """Several entries of one key but different block sets (a grid extracted in pieces): each
    block is found in the entry that holds it, past entries that lack it and past a folder of
    the same base that has no manifest (a half-deleted entry)."""
    entries = {pair: _stored(tmp_path, pair)[0] for pair in ((1, 2), (3, 4), (5, 6), (7, 8))}
    _, key = _stored(tmp_path / "elsewhere", (9,))
    (tmp_path / f"{key.base_digest}-b00000000").mkdir()             # sorts before every entry
    garbled = tmp_path / f"{key.base_digest}-b00000001"               # another writer's, corrupt
    garbled.mkdir()
    (garbled / extract.fc.MANIFEST).write_text("{not json")
    for pair, entry in entries.items():
        for b in pair:                      # no entry of exactly [b]: found by the base's glob
            found = extract.fc.CacheEntry.find(tmp_path, key.with_blocks([b]))
            assert found is not None and found.path == entry.path, b
    assert extract.fc.CacheEntry.find(tmp_path, key.with_blocks([2, 3])) is None
    # `blocks`: the blocks needed, when fewer than the key's
    assert extract.fc.CacheEntry.find(tmp_path, key.with_blocks([2, 9]), blocks=[2]).blocks == (1, 2)


class Named(torch.utils.data.Dataset):
    """n items with a string field (a file name, a class name) next to the video."""

    def __init__(self, names, videos):
        self.names, self.videos = names, videos

    def __len__(self):
        return len(self.names)

    def __getitem__(self, i):
        return {"video": self.videos[i], "name": self.names[i], "index": torch.tensor(i)}


def test_the_dataset_identity_sees_the_first_and_last_items_and_string_fields():
    """A regenerated dataset of the same length is a new dataset if its first or last item or
    a string field changed; the identity of unchanged data does not drift between versions."""
    videos = [torch.full((1, 2, 2, 3), i, dtype=torch.uint8) for i in range(10)]
    names = [f"clip_{i}.mp4" for i in range(10)]
    base = extract.fc.dataset_identity("t", "train", Named(names, videos))
    assert base == "t/train/n=10/ee70f47194157567"                    # items 0, 3, 6, 9 hashed
    # an augmenting reader is probed under a fixed seed: its identity is a function of the data
    assert extract.fc.dataset_identity("t", "train", Clips(5, augments=True)) == \
        "t/train/n=5/4d2e194d4a80a102"
    for i in (0, 9):
        changed = list(videos)
        changed[i] = changed[i] + 1
        assert extract.fc.dataset_identity("t", "train", Named(names, changed)) != base, i
    renamed = names[:9] + ["other.mp4"]
    assert extract.fc.dataset_identity("t", "train", Named(renamed, videos)) != base
    assert extract.fc.dataset_identity("t", "train", Named(names, videos)) == base


@pytest.mark.parametrize("manifest, detail", [
    ("{not json", r"does not parse as a cache manifest \(JSONDecodeError"),
    ('{"key": [1, 2], "shards": []}', "its 'key' is not an object"),
    ('{"shards": []}', r"does not parse as a cache manifest \(KeyError")])
def test_opening_a_broken_manifest_names_it_and_the_recovery(tmp_path, manifest, detail):
    entry, key = _stored(tmp_path, (1,))
    (entry.path / extract.fc.MANIFEST).write_text(manifest)
    with pytest.raises(extract.fc.IntegrityError, match=detail) as err:
        extract.fc.CacheEntry.open(tmp_path, key)
    assert err.value.path == str(entry.path / extract.fc.MANIFEST)
    assert f"delete {entry.path} and run again" in str(err.value)
    # find() on the folder this key would write says the same, instead of extracting over it
    with pytest.raises(extract.fc.IntegrityError, match="does not parse as a cache manifest") as err:
        extract.fc.CacheEntry.find(tmp_path, key)
    assert err.value.path == str(entry.path / extract.fc.MANIFEST)
    assert f"delete {entry.path} and run again" in str(err.value)


def test_a_missing_shard_is_named_and_entries_without_digests_open_with_a_warning(tmp_path):
    import json
    import warnings
    entry, key = _stored(tmp_path, (1,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")                              # a verified entry: silent
        extract.fc.CacheEntry.open(tmp_path, key)
    manifest = json.loads((entry.path / extract.fc.MANIFEST).read_text())
    for shard in manifest["shards"]:
        del shard[extract.fc.DIGEST]                                 # written before digests
    (entry.path / extract.fc.MANIFEST).write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match=f"cache entry {entry.path} predates shard digests"):
        extract.fc.CacheEntry.open(tmp_path, key)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                              # verify=False: not asked
        extract.fc.CacheEntry.open(tmp_path, key, verify=False)
    (entry.path / manifest["shards"][0]["file"]).unlink()
    with pytest.raises(extract.fc.IntegrityError, match="it is missing or has 0 bytes"):
        extract.fc.CacheEntry.open(tmp_path, key)


def test_a_timestep_from_a_sweep_keys_like_the_int():
    """Ray Tune and numpy hand out 300.0 or np.int64(300): the same entry as 300."""
    import numpy as np
    base = dict(backbone="fp", dataset="d", split="train", preprocessing={}, blocks=(1,))
    names = {extract.fc.CacheKey(timestep=t, **base).folder_name for t in (300, 300.0, np.int64(300))}
    assert len(names) == 1


def test_an_entry_written_under_another_key_names_both_values(tmp_path):
    import json
    entry, key = _stored(tmp_path, (1,))
    manifest = json.loads((entry.path / extract.fc.MANIFEST).read_text())
    manifest["key"]["timestep"] = 999
    (entry.path / extract.fc.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(extract.fc.CacheKeyMismatch,
                       match=r"fields \['timestep'\] differ: stored \[999\], wanted \[100\]"):
        extract.fc.CacheEntry.open(tmp_path, key)
