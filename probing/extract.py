"""Extraction: capture the activations of every block a grid needs, at one t, into the cache.

One backbone pass per batch yields all requested blocks (the backbone runs only up to the
deepest one), so caching an L-block x T-timestep grid costs T passes over each split. The noise
is fixed per example (seed = item index + NOISE_STRIDE * noise_seed), so the cached features are
exactly those a probe would compute on the fly with the same settings. With noise_draws = K > 1
the features are the mean over K such draws (`block_features`), draw k seeded by
`draw_seeds(seeds, k)`; K = 1 is the single draw, unchanged.

Every stored batch also holds `feature_spans` (b, t', 2): the clip frames each feature frame
covers (backbones/base.py frame_spans), which the task kinds resample time on.

Augmentation: a split whose reader augments (`dataset.augments`: random crops, flips, temporal
windows) would have one random view per example frozen into the cache. Such a split is cached
with K views per example (`views`, Probe.cache_views, part of the key): K passes over the split,
pass v with torch's RNG seeded by (v, VIEW_SEED_SALT), each row tagged with its `view`. Training
then shuffles all n * K rows, so each step's examples come with one of their K views. Without K
the cache refuses the split (ConfigError) instead of freezing one view silently.

API (used by the probe engine, `walt-probe extract` and the sweep's cache-preparation tasks):
  cache_key(backbone, task, split, timestep, blocks, dtype, noise_seed, views, noise_draws)
    -> CacheKey
  block_features(backbone, video, timestep, blocks, seeds, noise_draws) -> {block: features}
  ensure_entry(backbone, task, split, timestep, blocks, root, ...) -> (CacheEntry, created: bool)
"""

from __future__ import annotations

import sys
import time
from typing import Sequence

import torch
from einops import repeat
from torch.utils.data import DataLoader

from backbones.base import frame_spans, resolve_blocks
from probing import cache as fc
from probing.progress import Progress
from walt_probe.errors import ConfigurationError


class ConfigError(ConfigurationError):
    """The probe's configuration cannot work (missing component, block out of range, ...)."""


NOISE_STRIDE = 1_000_003  # > any split size here, so noise seeds of different noise_seed never collide
VIEW_SEED_SALT = 7_919    # view v of an augmenting split is drawn under torch seed v * salt + 1


def augments(dataset) -> bool:
    """Whether the dataset's items are random per access (its own `augments` flag)."""
    return bool(getattr(dataset, "augments", False))


def cache_views(task, split: str, views: int | None) -> int | None:
    """The number of views to cache for `split`: None for a split that does not augment, else
    `views` (>= 1); raises ConfigError for an augmenting split without it."""
    dataset = task.split(split)
    if not augments(dataset):
        return None
    if views is None or int(views) < 1:
        raise ConfigError(
            f"task '{task.name}' split '{split}' augments its items ({type(dataset).__name__}: "
            f"random crops, flips or temporal windows), so caching its features would freeze one "
            f"augmentation per example. Set Probe.cache_views = K (K augmented views per example "
            f"are cached, each training step draws one; the cache grows K-fold), or "
            f"Probe.use_cache = False (a fresh augmentation and backbone pass every step).")
    return int(views)


def add_feature_spans(batch: dict, backbone, feats: dict) -> dict:
    """batch['feature_spans'] = (b, t', 2) float32 frame spans of the features (in place)."""
    video, any_feat = batch["video"], next(iter(feats.values()))
    spans = frame_spans(backbone, int(video.shape[1]), int(any_feat.shape[1])).float()
    batch["feature_spans"] = repeat(spans, "t two -> b t two", b=any_feat.shape[0])
    return batch


def noise_seeds(batch, noise_seed: int) -> torch.Tensor:
    """(b,) long seeds of the fixed evaluation noise of each example (its index, offset by noise_seed)."""
    if "index" not in batch:
        raise ConfigError("items have no 'index' key; the Task contract (tasks/task.py) requires one, "
                       "it seeds the fixed noise that makes features reproducible and cacheable")
    return torch.as_tensor(batch["index"]).long() + NOISE_STRIDE * int(noise_seed)


# Draw k > 0 of a noise ensemble adds k * DRAW_STRIDE to the seeds: beyond every index and
# noise_seed offset in use (both < NOISE_STRIDE), so no draw repeats another example's noise;
# draw 0 is today's noise, so K = 1 reproduces the single-draw features bit for bit.
DRAW_STRIDE = NOISE_STRIDE ** 2


def draw_seeds(seeds: torch.Tensor, draw: int) -> torch.Tensor:
    """(b,) long seeds of noise draw `draw` (0 = the single-draw seeds themselves)."""
    return seeds + DRAW_STRIDE * int(draw)


def block_features(backbone, video: torch.Tensor, timestep: int, blocks: Sequence[int],
                   seeds: torch.Tensor, noise_draws: int = 1) -> dict[int, torch.Tensor]:
    """The backbone's features of `blocks`, averaged over `noise_draws` fixed noise draws.

    video: (b, T, H, W, 3) uint8 on the backbone's device; seeds: (b,) long (`noise_seeds`).
    Returns {block: (b, t, h, w, D)}: for K = noise_draws,
        f(x) = (1 / K) sum_{k=0}^{K-1} features(x, t, eps_k),  eps_k seeded by draw_seeds(seeds, k),
    summed in float32. K = 1 returns the backbone's output untouched (its dtype, bit for bit).
    Each draw costs one backbone pass, so K multiplies extraction time by K.
    """
    if int(noise_draws) < 1:
        raise ConfigError(f"noise_draws = {noise_draws}; use an int >= 1 (1 = a single noise draw)")
    feats = backbone.features(video, timestep, list(blocks), seeds=seeds)
    if noise_draws == 1:
        return feats
    total = {b: feats[b].float() for b in blocks}
    for draw in range(1, int(noise_draws)):
        more = backbone.features(video, timestep, list(blocks), seeds=draw_seeds(seeds, draw))
        for b in blocks:
            total[b] += more[b].float()
    return {b: v / int(noise_draws) for b, v in total.items()}


def resolve_block(spec, num_blocks: int) -> int:
    """One block index: an int (0 = embedding output, 1..L) or a fraction of depth in [0, 1]
    (0.66 of 12 blocks -> 8); 1 and 1.0 differ. `backbones.base.resolve_blocks` decides; this
    only insists on exactly one block and raises ConfigError."""
    if isinstance(spec, bool) or not isinstance(spec, (int, float)):
        raise ConfigError(f"block must be an int or a fraction of depth, got {spec!r}")
    try:
        (block,) = resolve_blocks(spec, num_blocks)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return block


def valid_blocks(specs: Sequence, num_blocks: int) -> list[int]:
    """The resolvable blocks among `specs` (a grid's block axis); invalid specs are skipped here
    and fail in the trial that asks for them, with their own message."""
    out = set()
    for spec in specs:
        try:
            out.add(resolve_block(spec, num_blocks))
        except ConfigError:
            pass
    return sorted(out)


def cache_key(backbone, task, split: str, timestep: int, blocks: Sequence[int],
              dtype: str = "float16", noise_seed: int = 0, views: int | None = None,
              noise_draws: int = 1) -> fc.CacheKey:
    """The cache key of `task`'s split seen through `backbone` at `timestep`.

    views: augmented views per example of an augmenting split (see the module docstring);
    ignored, and absent from the key, for a split that does not augment.
    noise_draws: the features are the mean over this many noise draws; part of the key only
    when != 1, so entries written before noise ensembles keep their keys.
    """
    preprocessing = {"dtype": dtype, "noise": "fixed-per-index", "noise_seed": int(noise_seed),
                     "noise_stride": NOISE_STRIDE}
    views = cache_views(task, split, views)
    if views is not None:
        preprocessing.update(views=views, view_seed_salt=VIEW_SEED_SALT)
    if int(noise_draws) != 1:
        preprocessing.update(noise_draws=int(noise_draws), draw_stride=DRAW_STRIDE)
    return fc.CacheKey(backbone=str(backbone.fingerprint), timestep=int(timestep),
                       dataset=fc.dataset_identity(task.name, split, task.split(split)),
                       split=split, preprocessing=preprocessing, blocks=tuple(blocks))


def device_of(backbone) -> torch.device:
    for attr in ("device",):
        if isinstance(getattr(backbone, attr, None), torch.device):
            return getattr(backbone, attr)
    params = getattr(backbone, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return torch.device("cpu")


def extract(backbone, task, key: fc.CacheKey, root, batch_size: int = 32, num_workers: int = 0,
            shard_size: int = 512, log_every_s: float = 30.0) -> fc.CacheEntry:
    """Runs the backbone once per batch over key.split (K times for K augmented views) and
    commits a new cache entry."""
    dataset = task.split(key.split)
    views = key.preprocessing.get("views")
    device = device_of(backbone)
    t0 = time.time()
    passes = 0
    with fc.CacheWriter(root, key, dtype=key.preprocessing["dtype"], shard_size=shard_size) as writer:
        for view in range(views or 1):
            # One seeded pass per view: the augmentations (torch's RNG, in this process or, via
            # the loader's generator, in its workers) are reproducible and differ between views.
            gen = torch.Generator().manual_seed(view * VIEW_SEED_SALT + 1)
            loader = DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                num_workers=num_workers, generator=gen)
            what = f"extract {task.name}/{key.split} t={key.timestep}"
            bar = Progress(len(loader), what + (f" view {view + 1}/{views}" if views else ""),
                           log_every_s)
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(view * VIEW_SEED_SALT + 1)
                for batch in loader:
                    seeds = noise_seeds(batch, key.preprocessing["noise_seed"]).to(device)
                    draws = key.preprocessing.get("noise_draws", 1)
                    feats = block_features(backbone, batch["video"].to(device), key.timestep,
                                           list(key.blocks), seeds, draws)
                    passes += draws
                    add_feature_spans(batch, backbone, feats)
                    if views:
                        batch["view"] = torch.full((len(batch["video"]),), view, dtype=torch.long)
                    writer.add({b: feats[b] for b in key.blocks}, batch)
                    bar.update()
            bar.close()
        return writer.commit({"backbone_batches": passes, "seconds": round(time.time() - t0, 3)})


# The Probe settings that decide which cache entry a probe reads: the key's fields (cache_key),
# the folder, the stored block set, and whether the cache is used at all. Every other Probe
# setting changes only the readout; probing/probe.py derives READOUT_ONLY_FIELDS from this, and
# the sweep its readout-only grid axes (grid points differing only there share one entry).
ENTRY_FIELDS = ("backbone", "task", "timestep", "cache_dtype", "noise_seed", "noise_draws",
                "cache_dir", "cache_blocks", "use_cache", "cache_views")


def ensure_probe_entry(probe, split: str, blocks: Sequence[int]) -> tuple[fc.CacheEntry, bool]:
    """`ensure_entry` with a Probe's settings (probing/probe.py): (entry, created)."""
    return ensure_entry(probe.backbone, probe.task, split, probe.timestep, blocks, probe.cache_dir,
                        probe.cache_dtype, probe.noise_seed, probe.eval_batch_size, probe.num_workers,
                        views=probe.cache_views, noise_draws=probe.noise_draws)


def ensure_entry(backbone, task, split: str, timestep: int, blocks: Sequence[int], root,
                 dtype: str = "float16", noise_seed: int = 0, batch_size: int = 32,
                 num_workers: int = 0, views: int | None = None,
                 noise_draws: int = 1) -> tuple[fc.CacheEntry, bool]:
    """The cache entry holding all `blocks` for this split and t; extracts it if missing.

    views: K augmented views per example for an augmenting split (required there; see the
    module docstring). Returns (entry, created). An existing entry with a superset of the
    blocks is reused. Concurrent callers for the same entry (two `extract` commands, a sweep's
    workers) serialise on a lock file (fc.entry_lock): the first extracts, the others wait and
    then read its entry.
    """
    key = cache_key(backbone, task, split, timestep, blocks, dtype, noise_seed, views, noise_draws)
    entry = fc.CacheEntry.find(root, key)
    if entry is not None:
        return entry, False
    with fc.entry_lock(root, key):
        entry = fc.CacheEntry.find(root, key)  # committed while this process waited for the lock
        if entry is not None:
            return entry, False
        return extract(backbone, task, key, root, batch_size=batch_size, num_workers=num_workers), True
