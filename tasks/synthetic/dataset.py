"""Rendered splits as HF datasets, cached on disk, read back as torch datasets of items.

A split is rendered once into a `datasets.DatasetDict` (train / validation / test), saved with
`save_to_disk` under `cache_dir/<name>-<key>`, and reloaded with `load_from_disk`. The key
hashes the generator's parameters AND the source of every module of `tasks/synthetic/`
plus CODE_VERSION, so a change to the renderer or a sampler renders afresh instead of
silently serving stale clips. Writes are atomic (temp folder + os.replace), and processes
asking for the same split at once render it once (a lock file beside it; the others wait).

Every item is a pure function of (name, split, seed, index): its generator is seeded from
a hash of those, and rendering is elementwise per clip, so the bytes do not depend on
batch size or on how the split is sharded over processes.

Speed: on the CPU a split is rendered by one worker process per usable core, each with
ONE torch thread. The renderer's ops are elementwise passes over ~10^5-10^6 values: on
idle cores two torch threads were 1.6x faster than one, but with other jobs on the
machine (load 3-6 on 2 cores) they were 3-4x SLOWER (threads wait on each other at every
op), while single-threaded processes match the idle two-thread speed and degrade
gracefully (benchmarks/results/render_speed.md). On a GPU one process renders larger batches. GPU bits may differ from CPU bits (other libm,
fused multiply-adds), so the render device is part of the cache key.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pathlib
import shutil
import tempfile
from typing import Callable, Sequence

import datasets
import numpy as np
import torch

CODE_VERSION = 3
DEFAULT_CACHE = os.environ.get("WALT_PROBE_SYNTHETIC_CACHE",
                               os.path.join(os.path.expanduser("~"), ".cache", "walt-probe", "synthetic"))
# Split name -> HF split name. Every item's generator hashes its split's name, so the three
# splits are disjoint draws of the same world: `val` selects (best cells), `test` reports.
SPLITS = {"train": "train", "val": "validation", "test": "test"}
# Clips rendered per batch: small batches stay in the CPU caches (10% less CPU time per
# clip at 4 than at 16); the GPU wants large ones.
CHUNK = {"cpu": 4, "cuda": 64}
# A split smaller than this many clips per extra process renders in-process (fork + arrow
# shard merge cost about a second).
MIN_CLIPS_PER_PROC = 64
DEVICES = ("cpu", "cuda", "auto")

# Item key -> (dtype stored on disk, dtype handed out). Depth is stored as float16 (0.05% steps).
_STORED = {"video": "uint8", "label": "int64", "depth": "float16", "intrinsics": "float32",
           "pose": "float32", "query_points": "float32", "target_points": "float32",
           "occluded": "bool", "boxes": "float32", "box_valid": "bool"}
_TORCH = {"uint8": torch.uint8, "int64": torch.int64, "float16": torch.float32,
          "float32": torch.float32, "bool": torch.bool}


def clip_generator(name: str, split: str, seed: int, index: int) -> torch.Generator:
    """The generator of one item: seeded by a hash of (name, split, seed, index)."""
    digest = hashlib.sha256(f"{name}/{split}/{seed}/{index}".encode()).hexdigest()
    return torch.Generator().manual_seed(int(digest[:15], 16))


def source_fingerprint() -> str:
    """sha256 over the source of tasks/synthetic/*.py (the contact sheet aside) and CODE_VERSION."""
    h = hashlib.sha256(f"code-version-{CODE_VERSION}".encode())
    for path in sorted(pathlib.Path(__file__).parent.glob("*.py")):
        if path.name == "contact_sheet.py":
            continue
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def cache_key(params: dict) -> str:
    """Short hash of the generator parameters and the code fingerprint."""
    blob = json.dumps({"params": params, "code": source_fingerprint()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def usable_cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_device(device: str) -> str:
    """'cpu' | 'cuda' | 'auto' (cuda when available) -> 'cpu' or 'cuda'."""
    if device not in DEVICES:
        raise ValueError(f"render device must be one of {DEVICES}, got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("render device 'cuda' asked for but torch sees no CUDA device; "
                           "use device='cpu' or device='auto'")
    return device


def resolve_num_proc(num_proc: int | None, size: int, device: str) -> int:
    """Worker processes for a split of `size` clips: num_proc if given (CPU), else one
    per usable core when the split is large enough to pay for them; always 1 on the GPU."""
    if device != "cpu":
        return 1
    if num_proc is None:
        return max(1, min(usable_cores(), size // MIN_CLIPS_PER_PROC))
    if num_proc < 1:
        raise ValueError(f"num_proc must be >= 1 (or None for one per usable core), got {num_proc}")
    return num_proc


def _features(example: dict[str, np.ndarray]) -> datasets.Features:
    array_types = {1: datasets.Sequence, 2: datasets.Array2D, 3: datasets.Array3D,
                   4: datasets.Array4D}
    feats = {"index": datasets.Value("int64")}
    for key, value in example.items():
        dtype = _STORED[key]
        if value.ndim == 0:
            feats[key] = datasets.Value(dtype)
        elif value.ndim == 1:
            feats[key] = datasets.Sequence(datasets.Value(dtype), length=value.shape[0])
        else:
            feats[key] = array_types[value.ndim](shape=tuple(value.shape), dtype=dtype)
    return datasets.Features(feats)


def _generate(chunks: Sequence[Sequence[int]], render_chunk: Callable, torch_threads: int):
    """datasets generator: renders each chunk of indices as one batch and yields stored items.

    torch_threads > 0 sets the thread count while rendering (restored afterwards, since
    with one process this runs in the caller's)."""
    before = torch.get_num_threads()
    if torch_threads:
        torch.set_num_threads(torch_threads)
    try:
        for chunk in chunks:
            chunk = list(chunk)
            for index, item in zip(chunk, render_chunk(chunk)):
                yield {"index": index, **{k: np.asarray(v).astype(_STORED[k]) for k, v in item.items()}}
    finally:
        torch.set_num_threads(before)


def build_split(size: int, render_chunk: Callable, work_dir: str, num_proc: int = 1,
                device: str = "cpu") -> datasets.Dataset:
    """Renders one split into a Dataset (arrow files under work_dir).

    render_chunk(indices) -> list of item dicts; it must pickle when num_proc > 1.
    device: the resolved render device ('cpu' or 'cuda'), which sets the batch size and
    the thread count (one torch thread per process on the CPU, see the module docstring).
    """
    threads = 1 if device == "cpu" else 0
    probe = next(_generate([[0]], render_chunk, threads))
    features = _features({k: v for k, v in probe.items() if k != "index"})
    # datasets shards list-valued gen_kwargs: a list of chunk-sized index lists keeps each
    # render batched; with num_proc > 1 the chunks go to worker processes in contiguous runs.
    step = CHUNK[device]
    chunks = [list(range(i, min(size, i + step))) for i in range(0, size, step)]
    ds = datasets.Dataset.from_generator(
        _generate, features=features, num_proc=num_proc if num_proc > 1 else None,
        gen_kwargs={"chunks": chunks, "render_chunk": render_chunk, "torch_threads": threads},
        cache_dir=work_dir)
    return ds


def cached_dataset_dict(name: str, params: dict, sizes: dict[str, int],
                        make_render_chunk: Callable[[str, str], Callable], cache_dir: str | None = None,
                        num_proc: int | None = None, device: str = "cpu") -> datasets.DatasetDict:
    """Loads `cache_dir/<name>-<key>` or renders and saves it first.

    params: every generator parameter (JSON-able); sizes: split ('train', 'val', 'test') -> count;
    make_render_chunk(split, device) -> render_chunk(indices) -> items; num_proc: worker
    processes (None: one per usable core for large CPU splits); device: 'cpu', 'cuda' or
    'auto'. The resolved device joins the key: a GPU-rendered split never stands in for a
    CPU one. num_proc and batch size do not change the bytes, so they stay out of the key.
    """
    cache_dir = cache_dir or DEFAULT_CACHE
    device = resolve_device(device)
    key = cache_key({"name": name, **params, "sizes": sizes, "device": device})
    final = os.path.join(cache_dir, f"{name}-{key}")
    if not os.path.isdir(final):
        os.makedirs(cache_dir, exist_ok=True)
        with _exclusive(os.path.join(cache_dir, f".{name}-{key}.lock"), f"{name} ({key})"):
            if not os.path.isdir(final):  # rendered by the process we waited for
                _render(final, cache_dir, name, params, sizes, make_render_chunk, num_proc, device)
    return datasets.load_from_disk(final)


@contextlib.contextmanager
def _exclusive(lock_path: str, what: str):
    """One renderer per split on this machine: the sweep's cache tasks (one per grid point, run
    in parallel) all ask for the same split, and each render already uses every core. The
    lock file stays (unlinking it would let a waiter lock a stale inode)."""
    with open(lock_path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"synthetic: waiting for another process to finish rendering {what}", flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _render(final: str, cache_dir: str, name: str, params: dict, sizes: dict[str, int],
            make_render_chunk: Callable[[str, str], Callable], num_proc: int | None, device: str) -> None:
    """Renders every split into a temp folder, then moves it to `final` in one rename."""
    tmp = tempfile.mkdtemp(prefix=f".{name}-", dir=cache_dir)
    splits = {SPLITS[s]: build_split(n, make_render_chunk(s, device), os.path.join(tmp, "gen", s),
                                     resolve_num_proc(num_proc, n, device), device)
              for s, n in sizes.items() if n > 0}
    datasets.DatasetDict(splits).save_to_disk(os.path.join(tmp, "data"))
    with open(os.path.join(tmp, "data", "walt_probe_params.json"), "w") as f:
        json.dump({"name": name, "params": params, "sizes": sizes, "device": device,
                   "code": source_fingerprint()}, f, indent=1)
    try:
        os.replace(os.path.join(tmp, "data"), final)
    except OSError:
        if not os.path.isdir(final):  # another machine sharing the folder finished first
            raise
    shutil.rmtree(tmp, ignore_errors=True)


class ItemDataset(torch.utils.data.Dataset):
    """A torch Dataset of item dicts (tasks/task.py keys) over one HF split."""

    def __init__(self, hf: datasets.Dataset):
        self.hf = hf.with_format("numpy")

    def __len__(self) -> int:
        return len(self.hf)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        row = self.hf[int(i)]
        item = {"index": torch.tensor(int(row["index"]), dtype=torch.int64)}
        for key, value in row.items():
            if key != "index":
                item[key] = torch.as_tensor(np.asarray(value)).to(_TORCH[_STORED[key]])
        return item
