"""Feature cache storage: keys, atomic commits, key checks on read, shard-local batching."""

import functools
import json
import os

import pytest
import torch

from probing import cache as fc


def _key(**over):
    base = dict(backbone="fp0", timestep=200, dataset="ds/train/n=10/abc", split="train",
                preprocessing={"dtype": "float16", "noise_seed": 0}, blocks=(1, 3))
    return fc.CacheKey(**{**base, **over})


def _write(root, key, n=10, batch=4, shard_size=4):
    feats = {b: torch.randn(n, 2, 3, 3, 5) + b for b in key.blocks}
    with fc.CacheWriter(root, key, shard_size=shard_size) as w:
        for s in range(0, n, batch):
            sl = slice(s, min(n, s + batch))
            w.add({b: f[sl] for b, f in feats.items()},
                  {"index": torch.arange(n)[sl], "label": torch.arange(n)[sl] % 3,
                   "video": torch.zeros(sl.stop - sl.start, 1, 8, 8, 3, dtype=torch.uint8)})
        entry = w.commit({"backbone_batches": -(-n // batch)})
    return entry, feats


def test_roundtrip_in_order_and_shuffled(tmp_path):
    key = _key()
    entry, feats = _write(tmp_path, key)
    assert entry.num_examples == 10 and len(entry.manifest["shards"]) == 3
    got = list(entry.iter_batches(3, batch_size=3))
    x = torch.cat([g[0] for g in got])
    assert torch.allclose(x, feats[3].half().float())
    assert torch.equal(torch.cat([g[1]["index"] for g in got]), torch.arange(10))
    assert "video" not in got[0][1]
    shuffled = list(entry.iter_batches(1, 3, shuffle=True, generator=torch.Generator().manual_seed(0)))
    idx = torch.cat([b["index"] for _, b in shuffled])
    assert sorted(idx.tolist()) == list(range(10))
    for f, b in shuffled:  # features stay aligned with their items
        assert torch.allclose(f, feats[1][b["index"]].half().float())


@pytest.mark.parametrize("field,value", [("backbone", "fp1"), ("timestep", 300), ("split", "val"),
                                         ("dataset", "ds/train/n=10/xyz"),
                                         ("preprocessing", {"dtype": "bfloat16", "noise_seed": 0})])
def test_a_differing_key_finds_nothing(tmp_path, field, value):
    _write(tmp_path, _key())
    assert fc.CacheEntry.find(tmp_path, _key(**{field: value})) is None
    assert fc.CacheEntry.find(tmp_path, _key()) is not None


def test_superset_of_blocks_is_found_but_not_a_missing_block(tmp_path):
    _write(tmp_path, _key(blocks=(0, 2, 4)))
    assert fc.CacheEntry.find(tmp_path, _key(blocks=(2,))).blocks == (0, 2, 4)
    assert fc.CacheEntry.find(tmp_path, _key(blocks=(2, 3))) is None


def test_tampered_manifest_cannot_be_read(tmp_path):
    key = _key()
    entry, _ = _write(tmp_path, key)
    manifest = json.loads((entry.path / fc.MANIFEST).read_text())
    manifest["key"]["timestep"] = 999
    (entry.path / fc.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(fc.CacheKeyMismatch, match="timestep"):
        fc.CacheEntry.open(tmp_path, key)
    assert fc.CacheEntry.find(tmp_path, key) is None


def test_truncated_shard_is_rejected(tmp_path):
    key = _key()
    entry, _ = _write(tmp_path, key)
    shard = entry.path / entry.manifest["shards"][0]["file"]
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(fc.CacheKeyMismatch, match="wrong size"):
        fc.CacheEntry.open(tmp_path, key)


def test_interrupted_write_leaves_nothing_readable(tmp_path):
    key = _key()
    with pytest.raises(KeyboardInterrupt):
        with fc.CacheWriter(tmp_path, key, shard_size=2) as w:
            w.add({1: torch.zeros(2, 1, 1, 1, 2), 3: torch.zeros(2, 1, 1, 1, 2)}, {"index": torch.arange(2)})
            assert any(p.name.startswith(".partial-") for p in tmp_path.iterdir())
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    assert fc.CacheEntry.find(tmp_path, key) is None


def test_killed_writer_partial_folder_is_invisible(tmp_path):
    key = _key()
    w = fc.CacheWriter(tmp_path, key, shard_size=2).__enter__()
    w.add({1: torch.zeros(2, 1, 1, 1, 2), 3: torch.zeros(2, 1, 1, 1, 2)}, {"index": torch.arange(2)})
    # No commit and no __exit__: what a SIGKILL leaves behind.
    assert fc.CacheEntry.find(tmp_path, key) is None
    old = w.tmp.stat().st_mtime - 2 * 86400
    os.utime(w.tmp, (old, old))
    assert fc.remove_stale_partials(tmp_path) == 1 and list(tmp_path.iterdir()) == []


def test_writer_checks_blocks_and_batch_sizes(tmp_path):
    with fc.CacheWriter(tmp_path, _key()) as w:
        with pytest.raises(ValueError, match="blocks"):
            w.add({1: torch.zeros(2, 1, 1, 1, 2)}, {"index": torch.arange(2)})
        with pytest.raises(ValueError, match="batch size"):
            w.add({1: torch.zeros(2, 1, 1, 1, 2), 3: torch.zeros(2, 1, 1, 1, 2)}, {"index": torch.arange(3)})


def test_folder_name_hashes_every_field():
    names = {_key().folder_name, _key(blocks=(1,)).folder_name, _key(timestep=0).folder_name,
             _key(split="val").folder_name}
    assert len(names) == 4
    assert _key(blocks=(3, 1)).folder_name == _key(blocks=(1, 3, 3)).folder_name


@pytest.mark.parametrize("shuffle,drop_last,batch", [(False, False, 3), (True, False, 3),
                                                     (True, True, 3), (True, True, 5)])
def test_resident_block_yields_the_shard_readers_batches(tmp_path, shuffle, drop_last, batch):
    """Same generator draws, same batches, same order as CacheEntry.iter_batches."""
    entry, _ = _write(tmp_path, _key(), n=10, batch=4, shard_size=4)   # shards of 4, 4, 2
    resident = fc.ResidentBlock(entry, 3)
    assert resident.nbytes == entry.block_bytes(3) == 10 * 2 * 3 * 3 * 5 * 2
    streams = [list(src(batch, shuffle=shuffle, generator=torch.Generator().manual_seed(7),
                        drop_last=drop_last))
               for src in (functools.partial(entry.iter_batches, 3), resident.iter_batches)]
    assert len(streams[0]) == len(streams[1]) > 0
    for (fa, ia), (fb, ib) in zip(*streams):
        assert fb.dtype == torch.float32 and torch.equal(fa, fb)
        assert ia.keys() == ib.keys() and all(torch.equal(ia[k], ib[k]) for k in ia)


def test_fits_compares_against_free_memory():
    ok, why = fc.ResidentBlock.fits(1 << 20, "cpu")
    assert ok and "MiB" in why
    ok, why = fc.ResidentBlock.fits(1 << 60, "cpu")
    assert not ok and "free" in why
