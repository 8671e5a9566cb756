"""Waymo Open 2-D box tracks, read straight from the v2 release's Parquet files (pyarrow).

Release layout (Waymo Open Dataset v2, one Parquet file per segment and component; the schema
is waymo-open-dataset's `src/waymo_open_dataset/v2/perception/{camera_image,box,base}.py`):

    <root>/training/camera_image/<segment>.parquet    key.segment_context_name, key.frame_timestamp_micros,
    <root>/validation/camera_image/<segment>.parquet   key.camera_name (int8, FRONT = 1),
                                                       [CameraImageComponent].image (JPEG bytes), ...
    <root>/{training,validation}/camera_box/<segment>.parquet
        the same frame keys + key.camera_object_id (string, a track id persistent over the segment),
        [CameraBoxComponent].box.center.{x,y}, .box.size.{x,y} (BoxAxisAligned2d, float64 pixels
        of that camera's image, x right, y down), [CameraBoxComponent].type (int8)

Only the FRONT camera is read (paper App. D.6: 1920 x 1280 at 10 Hz). A second, converted layout
is kept for data already exported to files (`layout='converted'`):

    <root>/<split>/<segment>/frames/<timestamp_us>.jpg     FRONT camera JPEG
    <root>/<split>/<segment>/boxes/<timestamp_us>.json     {"boxes": [{"id": str, "box": [x0, y0, x1, y1]}]}

Splits (common.SPLITS): 'test' is the release's `validation` (202 segments; what the paper
reports), 'train' / 'val' a seeded partition of `training` (798 segments) by segment name.

Checks, each naming the file and the first bad record: FRONT timestamps strictly increasing
(no duplicate frame), one box per (frame, camera_object_id), ids that persist over frames (a
segment whose every id occurs once was converted with per-frame ids), and, when frames are
decoded, every box inside its image.

Clip (paper App. D.6, following MooG): 10 Hz -> 5 Hz (every other frame), a random window of 17
of those frames (seeded by the example index outside training, so val / test are fixed sets),
frames resized so the short side is `image_size` and centre-cropped to a square. Tracks are the
objects present in the first frame of the window; a box is clipped to the crop; objects whose
first-frame box covers less than 0.5% of the crop are dropped; the 25 largest are kept. Segments
shorter than the window are skipped (`dataset.skipped`).

Items: video uint8 (17, S, S, 3); boxes float32 (25, 17, 4) [x0, y0, x1, y1] in [0, 1] of the crop
width / height, zero where padded or absent; box_valid bool (25, 17); index int64 ().
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from tasks.real.common import (read_json, read_text, DatasetFormatError, SkipLog, carve_val, check_boxes_in_frame,
                               check_monotone, check_split, decode_image, require_dir,
                               require_file, resize_short_crop, short_side_crop_geometry,
                               to_chw, to_thwc, window_start)

FRONT = 1                                   # camera_image.CameraName.FRONT
KEY_SEGMENT = "key.segment_context_name"
KEY_TIME = "key.frame_timestamp_micros"
KEY_CAMERA = "key.camera_name"
KEY_OBJECT = "key.camera_object_id"
IMAGE = "[CameraImageComponent].image"
BOX = "[CameraBoxComponent].box"
BOX_COLUMNS = [f"{BOX}.center.x", f"{BOX}.center.y", f"{BOX}.size.x", f"{BOX}.size.y"]

# Official split folder of each of our splits: 'test' is the evaluation split, 'train' and
# 'val' are carved from the training split.
RELEASE_SPLITS = {"train": "training", "val": "training", "test": "validation"}
CONVERTED_SPLITS = {"train": ("train", "training"), "val": ("train", "training"),
                    "test": ("val", "validation")}

Boxes = dict[str, np.ndarray]               # camera_object_id -> [x0, y0, x1, y1] float64 pixels


# ----------------------------------------------------------------------------- release (v2)

def _read_parquet(path: Path, columns: list[str], filters=None):
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path, columns=columns, filters=filters)
    except (OSError, ValueError, KeyError) as err:  # pyarrow.ArrowInvalid is a ValueError
        raise DatasetFormatError(f"{path}: not a Waymo v2 Parquet file with columns {columns} "
                                 f"({type(err).__name__}: {err}); expected the release's "
                                 f"component files, e.g. training/camera_box/<segment>.parquet") from err


def read_front_boxes(path: Path, timestamps: np.ndarray) -> dict[int, Boxes]:
    """FRONT camera boxes of a camera_box file: {timestamp: {camera_object_id: corners}}.

    Corners [x0, y0, x1, y1] = center -/+ size / 2 in pixels. Checks one box per id per frame,
    and that ids persist (some id occurs in more than one frame when the segment has boxes).
    """
    table = _read_parquet(path, [KEY_TIME, KEY_CAMERA, KEY_OBJECT, *BOX_COLUMNS],
                          filters=[(KEY_CAMERA, "=", FRONT)])
    times = table.column(KEY_TIME).to_numpy()
    ids = [str(x) for x in table.column(KEY_OBJECT).to_pylist()]
    cx, cy, sx, sy = (table.column(c).to_numpy().astype(np.float64) for c in BOX_COLUMNS)
    corners = np.stack([cx - sx / 2, cy - sy / 2, cx + sx / 2, cy + sy / 2], -1)
    known = set(int(t) for t in timestamps)
    out: dict[int, Boxes] = {int(t): {} for t in timestamps}
    for row, (t, k) in enumerate(zip(times, ids)):
        t = int(t)
        if t not in known:
            raise DatasetFormatError(f"{path}: row {row} (camera_object_id {k!r}) has timestamp "
                                     f"{t}, which no FRONT image of the segment has; expected "
                                     f"camera_box and camera_image of the same segment")
        if k in out[t]:
            raise DatasetFormatError(f"{path}: row {row}: camera_object_id {k!r} has two FRONT "
                                     f"boxes at timestamp {t}; expected one box per object per frame")
        out[t][k] = corners[row]
    counts: dict[str, int] = {}
    for frame in out.values():
        for k in frame:
            counts[k] = counts.get(k, 0) + 1
    if len(counts) > 1 and max(counts.values()) == 1:
        raise DatasetFormatError(f"{path}: no camera_object_id occurs in more than one frame "
                                 f"({len(counts)} ids); the ids do not persist, so they cannot "
                                 f"form tracks (expected the release's key.camera_object_id)")
    return out


class _Segment:
    """One segment of either layout: its 5 Hz timestamps, frames and boxes on demand."""

    def __init__(self, name: str, stamps_all: np.ndarray, frame_stride: int, image_file: Path,
                 box_file: Path, release: bool):
        self.name, self.release = name, release
        self.stamps_all = stamps_all                    # every FRONT frame, 10 Hz
        self.stamps = stamps_all[::frame_stride]        # the frames clips are drawn from, 5 Hz
        self.image_file, self.box_file = image_file, box_file

    def load(self, stamps: np.ndarray) -> tuple[np.ndarray, list[Boxes]]:
        """uint8 (T, H, W, 3) FRONT frames at `stamps` and each frame's boxes."""
        if self.release:
            table = _read_parquet(self.image_file, [KEY_TIME, IMAGE],
                                  filters=[(KEY_CAMERA, "=", FRONT),
                                           (KEY_TIME, "in", [int(t) for t in stamps])])
            by_time = dict(zip(table.column(KEY_TIME).to_pylist(), table.column(IMAGE).to_pylist()))
            frames = np.stack([decode_image(by_time[int(t)], source=f"{self.image_file} FRONT "
                                            f"image at {int(t)}") for t in stamps])
            boxes_all = read_front_boxes(self.box_file, self.stamps_all)
            boxes = [boxes_all[int(t)] for t in stamps]
        else:
            frames = np.stack([decode_image(self.image_file / f"{int(t)}.jpg") for t in stamps])
            boxes = [read_box_file(require_file(self.box_file / f"{int(t)}.json", "Waymo box file",
                                                "every frame needs its box JSON")) for t in stamps]
        h, w = frames.shape[1:3]
        for t, frame_boxes in zip(stamps, boxes):
            if frame_boxes:
                ids = list(frame_boxes)
                where = (f"{self.box_file} FRONT boxes at {int(t)}" if self.release
                         else str(self.box_file / f"{int(t)}.json"))
                check_boxes_in_frame(np.stack([frame_boxes[k] for k in ids]), h, w, where, ids)
        return frames, boxes


def release_segments(split_dir: Path) -> list[tuple[str, np.ndarray, Path, Path]]:
    """(segment, all FRONT timestamps sorted, camera_image file, camera_box file) per segment."""
    image_dir = split_dir / "camera_image"
    box_dir = require_dir(split_dir / "camera_box", "Waymo v2 camera_box component",
                          f"{image_dir} exists, so the 2-D boxes are expected next to it")
    out = []
    for image_file in sorted(image_dir.glob("*.parquet")):
        box_file = box_dir / image_file.name
        if not box_file.is_file():
            raise DatasetFormatError(f"{image_file} has no box file {box_file}; download the "
                                     f"camera_box component of the same segments")
        table = _read_parquet(image_file, [KEY_TIME, KEY_CAMERA], filters=[(KEY_CAMERA, "=", FRONT)])
        stamps = np.sort(table.column(KEY_TIME).to_numpy().astype(np.int64))
        check_monotone(stamps, f"{image_file} (FRONT camera)", "frame timestamps")
        out.append((image_file.stem, stamps, image_file, box_file))
    return out


# ----------------------------------------------------------------------------- converted layout

def read_box_file(path: Path) -> Boxes:
    """A per-frame box JSON -> {object id: [x0, y0, x1, y1] float64 pixels}."""
    try:
        data = read_json(path)
        boxes = {str(b["id"]): np.asarray(b["box"], np.float64) for b in data["boxes"]}
        if any(b.shape != (4,) for b in boxes.values()):
            raise ValueError("every 'box' must hold 4 numbers")
        return boxes
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise DatasetFormatError(f"{path}: not a box file ({type(err).__name__}: {err}); expected "
                                 f'{{"boxes": [{{"id": str, "box": [x0, y0, x1, y1]}}]}}') from err


def converted_segments(split_dir: Path) -> list[tuple[str, np.ndarray, Path, Path]]:
    out = []
    for seg in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        stems = [p.stem for p in (seg / "frames").glob("*.jpg")]
        bad = [s for s in stems if not s.isdigit()]
        if bad:
            raise DatasetFormatError(f"{seg / 'frames' / bad[0]}.jpg: expected frames named by "
                                     f"their integer timestamp in microseconds")
        out.append((seg.name, np.array(sorted(int(s) for s in stems), np.int64),
                    seg / "frames", seg / "boxes"))
    return out


# ----------------------------------------------------------------------------- dataset

def detect_layout(root: Path) -> str:
    """'release' when a split folder holds camera_image/, 'converted' when it holds segments."""
    for name in ("training", "validation"):
        if (root / name / "camera_image").is_dir():
            return "release"
    for names in CONVERTED_SPLITS.values():
        for name in names:
            d = root / name
            if d.is_dir() and any((p / "frames").is_dir() for p in d.iterdir() if p.is_dir()):
                return "converted"
    found = sorted(p.name for p in root.iterdir())[:8] if root.is_dir() else []
    raise DatasetFormatError(
        f"Waymo root {root}: no known layout (found {found}). Expected the v2 release "
        f"({root}/training/camera_image/<segment>.parquet and camera_box/, validation/ alike) or "
        f"the converted layout ({root}/train/<segment>/frames/<timestamp_us>.jpg + boxes/)")


class WaymoBoxes(SkipLog):
    """17-frame Waymo clips with up to 25 box tracks; see the module docstring for the keys.

    layout: 'auto' (detect_layout), 'release' (v2 Parquet) or 'converted'.
    val_fraction, split_seed: the share of training segments held out as 'val', and its seed.
    """

    def __init__(self, root: str | Path, split: str, *, image_size: int = 128,
                 num_frames: int = 17, frame_stride: int = 2, max_boxes: int = 25,
                 min_box_area: float = 0.005, layout: str = "auto", val_fraction: float = 0.1,
                 split_seed: int = 0):
        root = require_dir(root, "Waymo root", "Point the gin macro at the v2 release folder.")
        check_split(split, "Waymo")
        layout = detect_layout(root) if layout == "auto" else layout
        if layout == "release":
            split_dir = require_dir(root / RELEASE_SPLITS[split], f"Waymo v2 split for '{split}'",
                                    f"expected {root}/{RELEASE_SPLITS[split]}/camera_image/*.parquet")
            found = release_segments(split_dir)
        elif layout == "converted":
            split_dir = next((root / a for a in CONVERTED_SPLITS[split] if (root / a).is_dir()), None)
            if split_dir is None:
                raise DatasetFormatError(f"Waymo split '{split}' not found: expected "
                                         f"{root / CONVERTED_SPLITS[split][0]}/<segment>/frames and boxes")
            found = converted_segments(split_dir)
        else:
            raise ValueError(f"unknown Waymo layout '{layout}'; expected 'auto', 'release' or 'converted'")
        if split != "test":
            found = carve_val(found, [f[0] for f in found], split, val_fraction=val_fraction,
                              seed=split_seed, what=f"Waymo {split_dir}")
        self.layout, self.train, self.size, self.num_frames = layout, split == "train", image_size, num_frames
        self.frame_stride, self.max_boxes, self.min_box_area = frame_stride, max_boxes, min_box_area
        self.segments: list[_Segment] = []
        for name, stamps, image_file, box_file in found:
            seg = _Segment(name, stamps, frame_stride, image_file, box_file, layout == "release")
            if len(seg.stamps) < num_frames:
                self._skip(image_file, f"{len(seg.stamps)} frames at 5 Hz, fewer than {num_frames}")
                continue
            if layout == "release":
                read_front_boxes(box_file, stamps)  # fail at indexing, not mid-training
            self.segments.append(seg)
        if not self.segments:
            raise DatasetFormatError(f"Waymo '{split}' under {split_dir}: no segment with "
                                     f"{num_frames} frames at 5 Hz ({len(self.skipped)} skipped)")
        self._report_skips(f"waymo/{split}")

    def __len__(self) -> int:
        return len(self.segments)

    def pixel_boxes(self, i: int, stamps: np.ndarray) -> list[Boxes]:
        """Boxes of segment i at `stamps` in pixels of the full frame, as the data has them."""
        return self.segments[i].load(stamps)[1]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        seg = self.segments[i]
        # Evaluation windows are random too (paper), but seeded per example: a fixed set.
        gen = None if self.train else torch.Generator().manual_seed(i)
        start = window_start(len(seg.stamps), self.num_frames, "random", generator=gen)
        frames, boxes = seg.load(seg.stamps[start:start + self.num_frames])
        h, w = frames.shape[1:3]
        s = self.size
        video = resize_short_crop(to_chw(frames), s, s)
        sy, sx, top, left = short_side_crop_geometry(h, w, s, s)
        scale, offset = np.array([sx, sy, sx, sy]), np.array([left, top, left, top], np.float64)

        def normalise(b: np.ndarray) -> np.ndarray:  # pixels -> [0, 1] of the crop, clipped
            return np.clip((b * scale - offset) / s, 0.0, 1.0)

        def area(b: np.ndarray) -> float:
            return max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)

        first = {k: normalise(b) for k, b in boxes[0].items()}
        ids = [k for k, b in first.items() if area(b) >= self.min_box_area]
        ids = sorted(ids, key=lambda k: (-area(first[k]), k))[:self.max_boxes]
        out = np.zeros((self.max_boxes, self.num_frames, 4), np.float32)
        valid = np.zeros((self.max_boxes, self.num_frames), bool)
        for n, obj in enumerate(ids):
            for t, frame_boxes in enumerate(boxes):
                if obj in frame_boxes:
                    b = normalise(frame_boxes[obj])
                    if area(b) > 0:  # a box entirely outside the crop is absent there
                        out[n, t], valid[n, t] = b, True
        return {"video": to_thwc(video), "boxes": torch.from_numpy(out),
                "box_valid": torch.from_numpy(valid), "index": torch.tensor(i)}
