"""Feature cache storage: keys, atomic commits, key checks on read, shard-local batching."""

import functools
import json
import os
import sys
from pathlib import Path

import pytest
import torch

from probing import cache as fc
from walt_probe.errors import IntegrityError

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "runners"))
from corruption import MODES, corrupt  # noqa: E402


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
    with pytest.raises(IntegrityError, match="has 100 bytes") as err:
        fc.CacheEntry.open(tmp_path, key)
    assert str(shard) in str(err.value) and "re-extracts" in str(err.value)


@pytest.mark.parametrize("how", MODES)
def test_a_corrupt_shard_or_manifest_is_a_named_error(tmp_path, how):
    """Zeroed bytes keep the size (only the digest sees them); every mode names the file."""
    key = _key()
    entry, _ = _write(tmp_path, key, n=600, batch=300, shard_size=300)
    shard = entry.path / entry.manifest["shards"][1]["file"]
    corrupt(shard, how)
    with pytest.raises(IntegrityError, match="shard_00001") as err:
        fc.CacheEntry.find(tmp_path, key)
    assert f"delete {entry.path}" in str(err.value)
    manifest_root = tmp_path / "m"
    entry, _ = _write(manifest_root, key)
    corrupt(entry.path / fc.MANIFEST, how)
    with pytest.raises(IntegrityError, match="manifest.json"):
        fc.CacheEntry.find(manifest_root, key)


def test_shard_digests_are_of_the_written_bytes_and_checked_once_per_process(tmp_path, monkeypatch):
    key = _key()
    entry, _ = _write(tmp_path, key)
    for shard in entry.manifest["shards"]:
        assert shard[fc.DIGEST] == fc.shard_digest(entry.path / shard["file"])
    calls = []
    monkeypatch.setattr(fc, "shard_digest", lambda p: calls.append(p) or "x")
    fc.CacheEntry.open(tmp_path, key)  # verified at commit's open already: no rehash
    assert calls == []


def test_concurrent_extractions_of_one_entry_run_once(tmp_path):
    """Two processes ask for the same missing entry at once: one extracts, the other waits for
    its lock and reads the committed entry (each reports whether it created it)."""
    import subprocess
    import sys
    import textwrap
    script = textwrap.dedent(f"""
        import sys, time, torch
        from probing import cache as fc
        from probing.extract import ensure_entry
        class Task:
            name = "t"
            def split(self, s):
                return [{{"video": torch.zeros(1, 4, 4, 3, dtype=torch.uint8), "index": i}} for i in range(4)]
        class Backbone:
            fingerprint, num_blocks = "fp", 2
            def features(self, video, t, blocks, seeds=None):
                time.sleep(1.0)  # slow enough that the second process arrives while the first works
                with open({str(tmp_path / 'passes')!r}, "a") as fh:
                    fh.write("x")
                return {{b: torch.ones(video.shape[0], 1, 1, 1, 2) for b in blocks}}
        entry, created = ensure_entry(Backbone(), Task(), "train", 100, [1], {str(tmp_path / 'cache')!r}, batch_size=2)
        print("created" if created else "reused", entry.num_examples)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    texts = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), texts
    assert sorted(t.strip().splitlines()[-1].split()[0] for t in texts) == ["created", "reused"]
    assert any("waiting for pid" in t for t in texts)  # the second one waited on the lock
    assert (tmp_path / "passes").read_text() == "xx"  # 4 items / batch 2: one extraction's passes


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


@pytest.mark.parametrize("value, dtype, match", [(float("nan"), "float16", "inf or nan"),
                                                  (float("inf"), "float32", "inf or nan"),
                                                  (-1.4e12, "float16", "beyond the cache dtype 'float16'"),
                                                  (-1.4e12, "bfloat16", None)])
def test_activations_the_cache_cannot_hold_are_refused_with_the_fix(tmp_path, value, dtype, match):
    feats = {b: torch.randn(4, 1, 2, 2, 3) for b in (1, 3)}
    feats[3][2, 0, 1, 1, 0] = value
    with fc.CacheWriter(tmp_path, _key(), dtype=dtype) as w:
        add = functools.partial(w.add, feats, {"index": torch.arange(4)})
        if match is None:          # bfloat16 has float32's range: stored as is
            add()
            return
        with pytest.raises(ValueError, match=f"block 3: .*{match}"):
            add()


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
