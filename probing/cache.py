"""On-disk cache of captured activations: one entry per (backbone, t, dataset, split, preprocessing, blocks).

An entry is a folder of safetensors shards plus `manifest.json`:

  <root>/<base16>-b<blocks8>/manifest.json        the full CacheKey, shard list, example counts
  <root>/<base16>-b<blocks8>/shard_00000.safetensors
      feat/<block>   (n, t, h, w, D) float16|bfloat16   activations of that block, example order
      item/<key>     (n, ...)                           the item's non-video keys (label, index, ...)

`base16` hashes every key field except the block set and `blocks8` hashes the block set, so the
folder name is a hash of the whole key, and an entry holding a superset of the blocks a probe
needs is found by globbing `<base16>-b*`. Reading always goes through a CacheKey and checks it
against the manifest field by field: an entry written under a different key cannot be read.

Writes are atomic at the entry level: shards and manifest go into a hidden `.partial-*` folder
that is renamed into place only when complete. An interrupted extract leaves a `.partial-*`
folder that no reader ever opens (`remove_stale_partials` deletes them).

Integrity: each shard's manifest row records a fast digest (xxh3-128) of the shard's bytes,
computed from the serialised bytes while writing (no second read). Opening an entry verifies
every shard once per process and file state (path, size, mtime), raising `IntegrityError`
naming the shard and the recovery (delete the entry folder and extract again). Cost on a 1 GB
entry: benchmarks/results/cache_integrity.md. Entries written before digests existed open with a
warning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import mmap
import os
import shutil
import socket
import time
import uuid
import warnings
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import torch
import xxhash
from safetensors import safe_open
from safetensors.torch import save as serialize

from walt_probe.errors import CacheError, IntegrityError

# 2: items hold `feature_spans` (the frames each feature frame covers) and, for an augmenting
# split, `view`; format-1 entries lack them and are extracted again.
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def _check_storable(features: torch.Tensor, block: int, dtype: str) -> None:
    """Refuses activations the cache would store as inf or nan: a readout trained on them
    diverges several steps later with nothing naming the cause (the oracle's tracking probes on
    the GPU did, from one mis-rendered pixel at depth -1e12 that float16 stored as -inf)."""
    f = features.detach()
    bad = int((~torch.isfinite(f)).sum())
    if bad:
        raise ValueError(f"block {block}: {bad} of {f.numel()} activations are inf or nan; the "
                         "backbone produced them (check its inputs, weights and dtype); nothing "
                         "of this entry is cached")
    limit = torch.finfo(DTYPES[dtype]).max
    peak = float(f.abs().amax()) if f.numel() else 0.0
    if peak > limit:
        raise ValueError(f"block {block}: activations reach {peak:.3g}, beyond the cache dtype "
                         f"'{dtype}' (max {limit:.3g}); store them wider (Probe.cache_dtype = "
                         "'bfloat16' or 'float32') or find why they are that large")


class CacheKeyMismatch(CacheError):
    """A cache folder's manifest does not match the key it was opened with."""


DIGEST = "xxh3_128"  # fast (~10 GB/s a core), not cryptographic: it detects corruption, not forgery
_VERIFIED: set = set()  # (real path, size, mtime_ns, digest) of shards verified by this process


def shard_digest(path: str | Path) -> str:
    """xxh3-128 hex digest of a file's bytes, hashed straight from a read-only memory map (no
    copies into Python objects; the bytes are the ones a later safetensors mmap read sees)."""
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return xxhash.xxh3_128(b"").hexdigest()
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return xxhash.xxh3_128(mm).hexdigest()


def recovery(entry_dir: Path) -> str:
    return (f"delete {entry_dir} and run again: the probe (Probe.use_cache) or `walt-probe "
            f"extract` re-extracts it")


def verify_shard(path: Path, want: str | None, entry_dir: Path) -> None:
    """Raises IntegrityError when `path`'s digest is not `want`; each file state is hashed once
    per process (a sweep worker's trials share entries)."""
    if want is None:
        return
    st = path.stat()
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, want)
    if key in _VERIFIED:
        return
    got = shard_digest(path)
    if got != want:
        raise IntegrityError(path, recovery(entry_dir),
                             f"its {DIGEST} is {got[:12]}... but the manifest records {want[:12]}...")
    _VERIFIED.add(key)


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class CacheKey:
    """Everything that determines the activations stored in one entry.

    backbone: the backbone's `fingerprint` (weights + config).
    timestep: diffusion timestep t in [0, 1000) the latents were noised to.
    dataset: identity of the dataset (see `dataset_identity`).
    split: 'train' | 'val' | ...
    preprocessing: JSON-able dict of everything else that changes the stored values
      (storage dtype, how the noise was seeded, ...).
    blocks: sorted block indices stored (0 = embedding output).
    """

    backbone: str
    timestep: int
    dataset: str
    split: str
    preprocessing: Mapping
    blocks: tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "blocks", tuple(sorted(int(b) for b in set(self.blocks))))
        object.__setattr__(self, "timestep", int(self.timestep))

    def base_fields(self) -> dict:
        return {"format": FORMAT_VERSION, "backbone": self.backbone, "timestep": self.timestep,
                "dataset": self.dataset, "split": self.split,
                "preprocessing": dict(self.preprocessing)}

    def to_json(self) -> dict:
        return {**self.base_fields(), "blocks": list(self.blocks)}

    @property
    def base_digest(self) -> str:
        return _digest(self.base_fields())[:16]

    @property
    def folder_name(self) -> str:
        return f"{self.base_digest}-b{_digest(list(self.blocks))[:8]}"

    def with_blocks(self, blocks: Sequence[int]) -> "CacheKey":
        return dataclasses.replace(self, blocks=tuple(blocks))


def dataset_identity(task_name: str, split: str, dataset, num_probe_items: int = 4) -> str:
    """A string that changes when the dataset's content changes.

    Uses the dataset's own `fingerprint` attribute when it has one; otherwise hashes the bytes of
    a few evenly spaced items (every key, video included) together with the length, so a
    regenerated or resized dataset never maps to the same cache entry.
    """
    n = len(dataset)
    own = getattr(dataset, "fingerprint", None)
    h = hashlib.sha256(f"{task_name}|{split}|{n}|{own}".encode())
    if own is None and n:
        # An augmenting reader draws from torch's RNG: probe it under a fixed seed, so the
        # identity depends on the data only (and the caller's RNG stream is left untouched).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            _hash_items(h, dataset, n, num_probe_items)
    return f"{task_name}/{split}/n={n}/{h.hexdigest()[:16]}"


def _hash_items(h, dataset, n: int, num_probe_items: int) -> None:
    """Feeds the bytes of `num_probe_items` evenly spaced items (every key) into `h`."""
    for i in sorted({round(j * (n - 1) / max(num_probe_items - 1, 1)) for j in range(num_probe_items)}):
        item = dataset[i]
        for k in sorted(item):
            v = item[k]
            t = torch.as_tensor(v) if not isinstance(v, str) else None
            h.update(k.encode())
            h.update(v.encode() if t is None else t.contiguous().numpy().tobytes())


def item_tensors(batch: Mapping) -> dict[str, torch.Tensor]:
    """The numeric, non-video keys of a collated batch (what heads, losses and metrics read)."""
    out = {}
    for k, v in batch.items():
        if k == "video" or isinstance(v, (str, list)):
            continue
        out[k] = torch.as_tensor(v).detach().cpu().contiguous()
    return out


class CacheWriter:
    """Writes one entry: `add(features, batch)` per batch, then `commit()`; use as a context manager.

    features: {block: (b, t, h, w, D)} for exactly `key.blocks`; batch: the collated items.
    Shards hold `shard_size` examples. Nothing is visible under the entry's name until commit.
    """

    def __init__(self, root: str | Path, key: CacheKey, dtype: str = "float16", shard_size: int = 512):
        if dtype not in DTYPES:
            raise ValueError(f"cache dtype '{dtype}' is not supported; use one of {sorted(DTYPES)}")
        self.root, self.key, self.dtype, self.shard_size = Path(root), key, dtype, shard_size
        self.final = self.root / key.folder_name
        self.tmp = self.root / f".partial-{key.folder_name}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._buf: list[dict[str, torch.Tensor]] = []
        self._buffered = 0
        self._shards: list[dict] = []
        self.num_examples = 0

    def __enter__(self) -> "CacheWriter":
        self.tmp.mkdir(parents=True)
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None or self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False

    def add(self, features: Mapping[int, torch.Tensor], batch: Mapping) -> None:
        if sorted(features) != list(self.key.blocks):
            raise ValueError(f"features for blocks {sorted(features)} given; this entry stores "
                             f"blocks {list(self.key.blocks)}")
        for b, f in features.items():
            _check_storable(f, b, self.dtype)
        entry = {f"feat/{b}": f.detach().to("cpu", DTYPES[self.dtype]) for b, f in features.items()}
        entry.update({f"item/{k}": v for k, v in item_tensors(batch).items()})
        sizes = {v.shape[0] for v in entry.values()}
        if len(sizes) != 1:
            raise ValueError(f"features and items disagree on the batch size: {sorted(sizes)}")
        self._buf.append(entry)
        self._buffered += sizes.pop()
        if self._buffered >= self.shard_size:
            self._flush()

    def _flush(self) -> None:
        if not self._buf:
            return
        tensors = {k: torch.cat([e[k] for e in self._buf]).contiguous() for k in self._buf[0]}
        name = f"shard_{len(self._shards):05d}.safetensors"
        # Serialise to memory once: the digest is of exactly the bytes written, with no re-read.
        data = serialize(tensors)
        with open(self.tmp / f".{name}.tmp", "wb") as fh:
            fh.write(data)
        os.replace(self.tmp / f".{name}.tmp", self.tmp / name)
        self._shards.append({"file": name, "num_examples": self._buffered, "bytes": len(data),
                             DIGEST: xxhash.xxh3_128(data).hexdigest()})
        self.num_examples += self._buffered
        self._buf, self._buffered = [], 0

    def commit(self, extra: Mapping | None = None) -> "CacheEntry":
        """Writes the manifest and renames the folder into place (atomic); returns the entry."""
        self._flush()
        manifest = {"key": self.key.to_json(), "dtype": self.dtype, "num_examples": self.num_examples,
                    "shards": self._shards, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    **dict(extra or {})}
        (self.tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        try:
            os.replace(self.tmp, self.final)
        except OSError:
            # Another process committed the same key first: keep theirs (identical by construction).
            shutil.rmtree(self.tmp, ignore_errors=True)
            if not (self.final / MANIFEST).exists():
                raise
        return CacheEntry.open(self.root, self.key)


class CacheEntry:
    """A committed entry, opened through its key. Use `find` to locate one holding a block."""

    def __init__(self, path: Path, manifest: dict):
        self.path, self.manifest = path, manifest
        self.blocks = tuple(manifest["key"]["blocks"])
        self.num_examples = int(manifest["num_examples"])

    @classmethod
    def open(cls, root: str | Path, key: CacheKey, verify: bool = True) -> "CacheEntry":
        """Opens the entry of exactly `key`; raises FileNotFoundError, CacheKeyMismatch, or
        IntegrityError (a manifest that does not parse, a shard whose digest differs)."""
        path = Path(root) / key.folder_name
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            stored = manifest["key"]
            shards = manifest["shards"]
        except FileNotFoundError:
            raise
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
            raise IntegrityError(path / MANIFEST, recovery(path), f"it does not parse as a cache "
                                 f"manifest ({type(err).__name__}: {err})") from None
        if not isinstance(stored, dict):
            raise IntegrityError(path / MANIFEST, recovery(path), "its 'key' is not an object")
        wanted = key.to_json()
        diff = [f for f in wanted if stored.get(f) != wanted[f]]
        if diff:
            raise CacheKeyMismatch(
                f"cache entry {path} was written for a different key (fields {diff} differ: "
                f"stored {[stored.get(f) for f in diff]}, wanted {[wanted[f] for f in diff]}); "
                f"delete that folder and extract again.")
        unverifiable = False
        for shard in shards:
            f = path / shard["file"]
            if not f.is_file() or f.stat().st_size != shard["bytes"]:
                raise IntegrityError(f, recovery(path), f"it is missing or has {f.stat().st_size if f.is_file() else 0} "
                                     f"bytes, not the {shard['bytes']} the manifest records")
            if verify:
                verify_shard(f, shard.get(DIGEST), path)
            unverifiable |= DIGEST not in shard
        if verify and unverifiable:
            warnings.warn(f"cache entry {path} predates shard digests: its bytes cannot be verified "
                          f"(delete it to re-extract with digests)", stacklevel=2)
        return cls(path, manifest)

    @classmethod
    def find(cls, root: str | Path, key: CacheKey, blocks: Sequence[int] | None = None,
             ) -> "CacheEntry | None":
        """A committed entry whose key equals `key` except for a block set containing `blocks`.

        blocks: the blocks needed (default: key.blocks).
        """
        needed = set(key.blocks if blocks is None else blocks)
        root = Path(root)
        if not root.is_dir():
            return None
        exact = root / key.folder_name
        candidates = ([exact] if exact.is_dir() else []) + sorted(root.glob(f"{key.base_digest}-b*"))
        for path in candidates:
            try:
                stored = json.loads((path / MANIFEST).read_text())["key"]
                if not needed <= set(stored["blocks"]):
                    continue
                entry = cls.open(root, key.with_blocks(stored["blocks"]))
            except (FileNotFoundError, CacheKeyMismatch):
                continue
            except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
                if path == exact:  # the entry this key would write: corrupt, not someone else's
                    raise IntegrityError(path / MANIFEST, recovery(path),
                                         f"it does not parse as a cache manifest ({err})") from None
                continue
            if needed <= set(entry.blocks):
                return entry
        return None

    def load_shard(self, index: int, block: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(features (n, t, h, w, D) in the stored dtype, items {key: (n, ...)}) of one shard."""
        if block not in self.blocks:
            raise KeyError(f"block {block} is not in cache entry {self.path} (blocks {list(self.blocks)})")
        with safe_open(str(self.path / self.manifest["shards"][index]["file"]), framework="pt") as f:
            feats = f.get_tensor(f"feat/{block}")
            items = {k[len("item/"):]: f.get_tensor(k) for k in f.keys() if k.startswith("item/")}
        return feats, items

    def iter_batches(self, block: int, batch_size: int, shuffle: bool = False,
                     generator: torch.Generator | None = None, drop_last: bool = False,
                     ) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        """One epoch of (features (b, t, h, w, D) float32, batch items) from the cache.

        Shuffling is shard-local (shard order and order within a shard), so memory stays at
        one shard whatever the dataset size. `ResidentBlock` yields the same batches from
        memory (or the GPU) without reading a file per shard.
        """
        current, feats, items = None, None, None
        for s, sel in batch_order(self.shard_sizes, batch_size, shuffle, generator, drop_last):
            if s != current:
                (feats, items), current = self.load_shard(s, block), s
            yield feats[sel].float(), {k: v[sel] for k, v in items.items()}

    @property
    def shard_sizes(self) -> list[int]:
        return [int(shard["num_examples"]) for shard in self.manifest["shards"]]

    def block_bytes(self, block: int) -> int:
        """Bytes of one block's activations over the whole entry (stored dtype)."""
        with safe_open(str(self.path / self.manifest["shards"][0]["file"]), framework="pt") as f:
            sl = f.get_slice(f"feat/{block}")
            per_example = math.prod(sl.get_shape()[1:])
        return per_example * self.num_examples * DTYPES[self.manifest["dtype"]].itemsize


def shard_order(shard_sizes: Sequence[int], batch_size: int, shuffle: bool,
                generator: torch.Generator | None, drop_last: bool,
                ) -> Iterator[tuple[int, torch.Tensor, list[slice]]]:
    """One epoch, shard by shard: (shard, example order within it (n,) long, its batch slices).

    Shuffled: a permutation of the shards, then one permutation per shard drawn when that shard
    is reached (so the generator advances exactly as the shard reader always did); batches never
    span two shards; drop_last drops each shard's incomplete tail when the shard holds a batch.
    """
    order = list(range(len(shard_sizes)))
    if shuffle:
        order = [order[i] for i in torch.randperm(len(order), generator=generator)]
    for s in order:
        n = shard_sizes[s]
        idx = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        yield s, idx, [slice(start, start + batch_size) for start in range(0, stop, batch_size)]


def batch_order(shard_sizes: Sequence[int], batch_size: int, shuffle: bool,
                generator: torch.Generator | None, drop_last: bool,
                ) -> Iterator[tuple[int, torch.Tensor]]:
    """One epoch's batches as (shard, example indices within the shard (b,) long); see shard_order."""
    for s, idx, slices in shard_order(shard_sizes, batch_size, shuffle, generator, drop_last):
        for sl in slices:
            yield s, idx[sl]


class ResidentBlock:
    """One block of an entry loaded whole into memory on `device`, batched from there.

    features: (n, t, h, w, D) in the stored dtype; items: {key: (n, ...)}. On a CUDA device a
    training step then does no host I/O and no host-to-device copy of features: each batch is a
    gather on the device (`iter_batches` yields exactly the batches of CacheEntry.iter_batches,
    same generator draws, same order). `fits` decides whether a block may go to a device.
    """

    def __init__(self, entry: CacheEntry, block: int, device: torch.device | str = "cpu"):
        device = torch.device(device)
        parts = [entry.load_shard(s, block) for s in range(len(entry.manifest["shards"]))]
        self.device = device
        self.features = torch.cat([f for f, _ in parts]).to(device)
        self.items = {k: torch.cat([it[k] for _, it in parts]).to(device) for k in parts[0][1]}
        self.shard_sizes = entry.shard_sizes
        starts = [0]
        for n in self.shard_sizes[:-1]:
            starts.append(starts[-1] + n)
        self.shard_starts = starts

    @property
    def nbytes(self) -> int:
        return self.features.numel() * self.features.element_size()

    @staticmethod
    def fits(nbytes: int, device: torch.device | str, fraction: float = 0.5) -> tuple[bool, str]:
        """(True, why) when `nbytes` may be held on `device`: at most `fraction` of its free memory
        (the readout's activations and optimiser need the rest; on the CPU: of available RAM)."""
        device = torch.device(device)
        if device.type == "cpu":
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        elif device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
        else:
            return False, f"no free-memory query for device type '{device.type}'"
        if nbytes <= fraction * free:
            return True, f"{nbytes / 2**20:.0f} MiB <= {fraction:.0%} of {free / 2**20:.0f} MiB free on {device}"
        return False, (f"{nbytes / 2**20:.0f} MiB > {fraction:.0%} of {free / 2**20:.0f} MiB free on "
                       f"{device}")

    def iter_batches(self, batch_size: int, shuffle: bool = False,
                     generator: torch.Generator | None = None, drop_last: bool = False,
                     ) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        """As CacheEntry.iter_batches (features float32), gathered on this block's device."""
        for s, idx, slices in shard_order(self.shard_sizes, batch_size, shuffle, generator, drop_last):
            # One small host-to-device copy of indices per shard and epoch; batches slice it.
            idx = (idx + self.shard_starts[s]).to(self.device, non_blocking=True)
            for sl in slices:
                sel = idx[sl]
                yield self.features[sel].float(), {k: v[sel] for k, v in self.items.items()}


@contextlib.contextmanager
def entry_lock(root: str | Path, key: CacheKey, log_every_s: float = 30.0):
    """Holds an exclusive lock on `<root>/.lock-<entry folder>` (fcntl.flock) for the block.

    A second process asking for the same entry waits here, printing who holds it (the PID written
    into the lock file) every `log_every_s`. The kernel drops the lock when its holder exits, even
    on kill -9, so a stale lock file never blocks anyone. flock is per host: on a shared file
    system two hosts may still extract the same entry once each (commit keeps the first).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / f".lock-{key.folder_name}"
    with open(path, "a+") as fh:
        waited, t0 = False, time.time()
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited or time.time() - t0 > log_every_s:
                    fh.seek(0)
                    holder = fh.read().strip() or "another process"
                    print(f"cache: waiting for {holder} to finish extracting {key.folder_name}",
                          flush=True)
                    waited, t0 = True, time.time()
                time.sleep(0.2)
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
            fh.flush()
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def remove_stale_partials(root: str | Path, older_than_s: float = 24 * 3600) -> int:
    """Deletes `.partial-*` folders left by interrupted extracts older than `older_than_s`."""
    root, n = Path(root), 0
    if root.is_dir():
        for p in root.glob(".partial-*"):
            if time.time() - p.stat().st_mtime > older_than_s:
                shutil.rmtree(p, ignore_errors=True)
                n += 1
    return n
