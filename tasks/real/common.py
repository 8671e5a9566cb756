"""Shared plumbing of the real-dataset readers: path checks, errors, skips, images, windows.

Every reader turns a standard on-disk layout into items with the `tasks/task.py` keys. Two
kinds of bad input exist:

* input that would change the evaluation set if ignored (a missing split, a label outside the
  class list, an image that does not decode): a `DatasetFormatError` naming the file, what was
  expected and how to fix it;
* input the paper's protocol allows to drop (a Kinetics video that is not on disk, a scene too
  short for a 17-frame clip): a logged skip, recorded in `dataset.skipped` as (path, reason)
  pairs so a run's results can report how many examples were left out.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from einops import rearrange

from walt_probe.errors import DatasetError

log = logging.getLogger("tasks.real")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".mpeg")


class DatasetFormatError(DatasetError):
    """The data on disk does not match the layout a reader expects; the message names the
    file, what was expected and, where there is one, the fix."""


def as_path(path, what: str) -> Path:
    """A user-given location as a Path; an unset one (gin's REQUIRED sentinel, None) is an error."""
    if not isinstance(path, (str, os.PathLike)):
        raise DatasetFormatError(f"{what}: no location given (got {path!r}); set the dataset's "
                                 f"required gin macro, e.g. --gin_bindings=\"IMAGENET_DIR = '/data/imagenet'\"")
    return Path(path).expanduser()


def require_dir(path: str | Path, what: str, hint: str = "") -> Path:
    """`path` as a Path, or a DatasetFormatError saying which folder was expected there."""
    p = as_path(path, what)
    if not p.is_dir():
        raise DatasetFormatError(f"{what}: folder not found: {p}.{' ' + hint if hint else ''}")
    return p


def require_file(path: str | Path, what: str, hint: str = "") -> Path:
    """`path` as a Path, or a DatasetFormatError saying which file was expected there."""
    p = as_path(path, what)
    if not p.is_file():
        raise DatasetFormatError(f"{what}: file not found: {p}.{' ' + hint if hint else ''}")
    return p


def describe_dir(path: Path, limit: int = 10) -> str:
    """What a folder holds, for layout errors: 'a/, b.json, ... (+N more)' or 'nothing'."""
    if not path.is_dir():
        return "no such folder"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more if names else "nothing"


def read_text(path: Path) -> str:
    """A text file's contents; DatasetFormatError naming the file when it is not UTF-8 text (a
    binary file where an annotation list was expected) or cannot be read."""
    try:
        return Path(path).read_text()
    except UnicodeDecodeError as err:
        raise DatasetFormatError(f"{path}: not a text file (byte {err.start} does not decode as "
                                 f"UTF-8); docs/real_datasets.md lists the files each reader expects") from None
    except OSError as err:
        raise DatasetFormatError(f"{path}: cannot be read ({err.strerror or err})") from None


def read_json(path: Path):
    """A JSON file's value; DatasetFormatError naming the file when it is not JSON text."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DatasetFormatError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}); "
                                 f"docs/real_datasets.md lists the files each reader expects") from None


def find_first(candidates: Sequence[Path], what: str, root: Path | None = None) -> Path:
    """The first existing path among `candidates`, or an error listing every place looked
    (and, given `root`, what was found there instead)."""
    for c in candidates:
        if c.exists():
            return c
    looked = "\n  ".join(str(c) for c in candidates)
    found = f"\nfound in {root}: {describe_dir(root)}" if root is not None else ""
    raise DatasetFormatError(f"{what}: none of these exist:\n  {looked}{found}\n"
                             f"(docs/real_datasets.md lists the layouts read)")


class SkipLog:
    """Mixin: examples left out at indexing time, each logged once and kept for the results.

    `skipped` is a list of (path, reason); `len(dataset.skipped)` is the count to report.
    """

    skipped: list[tuple[str, str]]

    @property
    def augments(self) -> bool:
        """True when items are random per access. Every real reader draws its crops, flips and
        temporal windows only in training mode (`self.train`); evaluation items are fixed."""
        return bool(getattr(self, "train", False))

    def _skip(self, path: str | Path, reason: str) -> None:
        if not hasattr(self, "skipped"):
            self.skipped = []
        self.skipped.append((str(path), reason))
        log.warning("skipping %s: %s", path, reason)

    def _report_skips(self, name: str) -> None:
        """Call at the end of indexing: makes `skipped` exist and logs the total once."""
        self.skipped = getattr(self, "skipped", [])
        if self.skipped:
            log.warning("%s: %d example(s) skipped (see dataset.skipped)", name, len(self.skipped))


def decode_image(data: bytes | str | Path, source: str = "") -> np.ndarray:
    """Decodes an image file or its bytes to uint8 (H, W, 3) RGB.

    Raises DatasetFormatError naming `source` (or the path) when it does not decode.
    """
    from PIL import Image, UnidentifiedImageError

    name = source or ("<image bytes>" if isinstance(data, bytes) else str(data))
    try:
        fh = io.BytesIO(data) if isinstance(data, bytes) else open(data, "rb")
        with fh, Image.open(fh) as img:
            img.load()
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise DatasetFormatError(f"image does not decode: {name} (expected a JPEG/PNG readable "
                                 f"by PIL; {type(err).__name__}: {err}). Re-extract or remove "
                                 f"the file.") from err


def read_depth_png(path: Path) -> np.ndarray:
    """A 16-bit depth PNG or PGM (ScanNet: millimetres, 0 = invalid) as uint16 (H, W)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            arr = np.asarray(img)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise DatasetFormatError(f"depth image does not decode: {path} (expected a uint16 PNG "
                                 f"of millimetres; {type(err).__name__}: {err})") from err
    if arr.ndim != 2 or arr.dtype not in (np.uint16, np.int32, np.uint8):
        raise DatasetFormatError(f"depth image {path} has shape {arr.shape} dtype {arr.dtype}; "
                                 f"expected a single-channel uint16 PNG (millimetres)")
    return arr.astype(np.uint16)


def window_start(num_available: int, span: int, mode: str, generator: torch.Generator | None = None) -> int:
    """First frame of a temporal window of `span` frames out of `num_available`.

    mode: 'random' (uniform over every start that fits; training), 'first' (frame 0),
    'center' (the middle window). A video shorter than `span` starts at 0.
    """
    last = max(num_available - span, 0)
    if mode == "first":
        return 0
    if mode == "center":
        return last // 2
    if mode == "random":
        # torch's RNG, so torch.manual_seed and DataLoader worker seeding make it reproducible.
        return int(torch.randint(0, last + 1, (), generator=generator))
    raise ValueError(f"unknown window mode '{mode}'; expected 'random', 'first' or 'center'")


def window_indices(start: int, num_frames: int, stride: int, num_available: int) -> np.ndarray:
    """Frame indices start, start + stride, ... (num_frames of them), clamped to the last frame.

    Clamping repeats the last frame of a video shorter than the window (the usual padding of
    video classification pipelines); it is documented in docs/real_datasets.md.
    """
    idx = start + stride * np.arange(num_frames)
    return np.minimum(idx, num_available - 1)


def short_side_crop_geometry(height: int, width: int, resize_to: int, crop: int,
                             offset: tuple[int, int] | None = None) -> tuple[float, float, int, int]:
    """Geometry of 'resize the short side to `resize_to`, then crop `crop` x `crop`'.

    Returns (scale_y, scale_x, top, left): a pixel coordinate (x, y) of the source maps to
    (x * scale_x - left, y * scale_y - top) in the crop. `offset` is (top, left) of the crop in
    the resized image; None means the centre crop.
    """
    s = resize_to / min(height, width)
    new_h, new_w = max(round(height * s), crop), max(round(width * s), crop)
    if offset is None:
        top, left = (new_h - crop) // 2, (new_w - crop) // 2
    else:
        top, left = offset
    return new_h / height, new_w / width, top, left


def resize_short_crop(frames: torch.Tensor, resize_to: int, crop: int,
                      offset: tuple[int, int] | None = None, nearest: bool = False) -> torch.Tensor:
    """frames: (..., C, H, W) -> (..., C, crop, crop), resized so the short side is `resize_to`.

    `nearest` keeps values such as depth (0 = invalid must stay 0, not blend with neighbours).
    """
    from torchvision.transforms.v2 import functional as F
    from torchvision.transforms import InterpolationMode

    h, w = frames.shape[-2:]
    sy, sx, top, left = short_side_crop_geometry(h, w, resize_to, crop, offset)
    size = [round(h * sy), round(w * sx)]
    mode = InterpolationMode.NEAREST if nearest else InterpolationMode.BILINEAR
    out = F.resize(frames, size, interpolation=mode, antialias=not nearest)
    return out[..., top:top + crop, left:left + crop]


def scale_intrinsics(k: np.ndarray, scale_y: float, scale_x: float, top: int, left: int) -> np.ndarray:
    """Pixel-unit K (3, 3) of the source raster -> K of the resized and cropped raster.

    With the pixel-centre convention of tasks/task.py, resizing scales x by scale_x (cx
    included) and cropping shifts the principal point by the crop offset.
    """
    k = np.asarray(k, dtype=np.float64).copy()
    k[0, :] *= scale_x
    k[1, :] *= scale_y
    k[0, 2] -= left
    k[1, 2] -= top
    k[2] = [0.0, 0.0, 1.0]
    return k.astype(np.float32)


def to_chw(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) numpy -> uint8 (T, 3, H, W) tensor (what torchvision transforms take)."""
    return rearrange(torch.from_numpy(np.ascontiguousarray(frames)), "T H W c -> T c H W", c=3)


def to_thwc(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (T, 3, H, W) -> contiguous uint8 (T, H, W, 3), the item layout of tasks/task.py."""
    return rearrange(frames, "T c H W -> T H W c", c=3).contiguous()


# ----------------------------------------------------------------------------- splits

#: The splits every real reader exposes: 'test' is the dataset's standard evaluation split
#: (what papers report), 'train' and 'val' are a seeded partition of the official training split,
#: so a sweep selects its best cell on 'val' and reports 'test' (issue 17, section 2).
SPLITS = ("train", "val", "test")


def check_split(split: str, what: str) -> str:
    """`split` if it is one of SPLITS, else a DatasetFormatError naming the three."""
    if split not in SPLITS:
        raise DatasetFormatError(f"{what}: split '{split}' not found; expected one of {SPLITS} "
                                 f"('test' = the official evaluation split, 'train' / 'val' = "
                                 f"a seeded partition of the official training split)")
    return split


def _rank(key: str, seed: int) -> int:
    # A keyed hash, not Python's hash(): the same on every machine, process and Python version.
    return int.from_bytes(hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest(), "big")


def carve_val(items: Sequence, keys: Sequence[str], split: str, *, val_fraction: float,
              seed: int = 0, what: str = "dataset") -> list:
    """The 'train' or 'val' part of the official training split `items`.

    keys: one stable string per item (a path relative to the root, a scene or clip name). An
    item goes to 'val' when its keyed hash with `seed` is among the ceil(val_fraction * n)
    smallest, so the partition is deterministic, disjoint, independent of listing order, and
    an item keeps its side on another copy of the dataset that lacks a few files (Kinetics).
    Items sharing a key (frames of one scene) always land on the same side.
    Returns the kept items in their original order.
    """
    if split not in ("train", "val"):
        raise ValueError(f"carve_val takes split 'train' or 'val', got '{split}'")
    if not 0.0 < val_fraction < 1.0:
        raise DatasetFormatError(f"{what}: val_fraction = {val_fraction}; expected a fraction "
                                 f"in (0, 1) of the official training split held out as 'val'")
    if len(items) != len(keys):
        raise ValueError(f"carve_val: {len(items)} items but {len(keys)} keys")
    unique = sorted(set(keys), key=lambda k: (_rank(k, seed), k))
    if len(unique) < 2:
        raise DatasetFormatError(f"{what}: the training split has {len(unique)} distinct "
                                 f"group(s); at least 2 are needed to hold one out as 'val'")
    num_val = min(max(1, math.ceil(val_fraction * len(unique))), len(unique) - 1)
    held_out = set(unique[:num_val])
    keep_val = split == "val"
    return [item for item, k in zip(items, keys) if (k in held_out) == keep_val]


# ----------------------------------------------------------------------------- validation

def first_bad(bad: np.ndarray) -> tuple[int, ...] | None:
    """Index of the first True of a boolean array (row-major), or None when all are False."""
    flat = np.flatnonzero(np.asarray(bad))          # row-major positions of the True entries
    return None if flat.size == 0 else tuple(int(i) for i in np.unravel_index(flat[0], np.shape(bad)))


def check_video_uint8(video: np.ndarray, source: str) -> np.ndarray:
    """`video` if it is uint8 (T, H, W, 3), else a DatasetFormatError naming `source`."""
    video = np.asarray(video)
    if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
        raise DatasetFormatError(f"{source}: video has dtype {video.dtype} and shape {video.shape}; "
                                 f"expected uint8 (T, H, W, 3) RGB (convert floats with "
                                 f"np.round(x * 255).astype(np.uint8))")
    return video


def check_monotone(values: np.ndarray, source: str, what: str = "timestamps") -> None:
    """Strictly increasing `values` (T,), or an error naming the first record out of order."""
    values = np.asarray(values)
    bad = first_bad(np.diff(values) <= 0)
    if bad is not None:
        i = bad[0] + 1
        raise DatasetFormatError(f"{source}: {what} not strictly increasing at record {i} "
                                 f"({values[i - 1]} then {values[i]}); expected one record per "
                                 f"frame in time order")


def check_boxes_in_frame(boxes: np.ndarray, height: int, width: int, source: str,
                         ids: Sequence[str] | None = None) -> None:
    """Pixel boxes (..., 4) [x0, y0, x1, y1] inside a height x width frame with x0 < x1, y0 < y1.

    A one-pixel tolerance admits boxes whose edge sits on the frame border. The error names
    `source` and the first bad record (its index, and its id when `ids` is given).
    """
    boxes = rearrange(np.asarray(boxes, np.float64), "... k -> (...) k", k=4)
    tol = 1.0
    bad = ((boxes[:, 0] < -tol) | (boxes[:, 1] < -tol) | (boxes[:, 2] > width + tol)
           | (boxes[:, 3] > height + tol) | (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
           | ~np.isfinite(boxes).all(axis=1))
    i = first_bad(bad)
    if i is not None:
        name = f" (id {ids[i[0]]!r})" if ids is not None else ""
        raise DatasetFormatError(f"{source}: box {i[0]}{name} = {boxes[i[0]].tolist()} [x0, y0, x1, y1] "
                                 f"pixels is not inside the {width} x {height} frame with x0 < x1 "
                                 f"and y0 < y1; check the unit (pixels, not [0, 1]) and the order")
