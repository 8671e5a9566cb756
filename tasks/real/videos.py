"""Action recognition readers: Kinetics-400 / 700 and Something-Something v2.

Layouts (docs/real_datasets.md has the full trees):

* Kinetics, CSV: `<root>/annotations/<split>.csv` (or `<root>/<split>.csv`) with columns
  `label, youtube_id, time_start, time_end, split`; clips anywhere under `<root>/<split>/`,
  named `<youtube_id>_<start:06d>_<end:06d>.<ext>` (the CVDF mirror, trimmed to the segment)
  or `<youtube_id>.<ext>`. A `<youtube_id>` file longer than its segment (+1 s) is an untrimmed
  download: it is seeked to [time_start, time_end) and frames are sampled only from there
  (video_io.read_video_segment); a file with no frame in the segment is refused.
* Kinetics, videofolder: `<root>/<split>/metadata.csv` (`file_name, label`), or
  `<root>/<split>/<class name>/<clip>.<ext>`.
* SSv2: `<root>/labels/labels.json` (template -> id), `labels/train.json` / `validation.json`
  (entries: id, template, ...; the current package), or the same files at the root, or the
  20BN names `something-something-v2-*.json`; videos `<root>/20bn-something-something-v2/<id>.webm`
  or `<root>/videos/<id>.webm`.

Splits: 'test' is the official validation split (Kinetics val.csv, SSv2 validation.json);
'train' / 'val' partition the official training split by clip (common.carve_val).

The class list is `<root>/classes.txt` when present (one name per line), else the sorted class
names of the training split; an evaluation label outside it is an error. A clip listed but not on
disk is skipped and recorded in `dataset.skipped` (YouTube takedowns make every Kinetics copy
incomplete); a clip that is on disk but does not decode is an error naming the file.

Frame sampling (paper App. D.2): 17 frames at stride 1 (Kinetics) or 2 (SSv2); training takes a
random window, evaluation the centre window; clips shorter than the window repeat their last
frame. Items: video uint8 (17, size, size, 3), index int64 (), label int64 ().
"""

from __future__ import annotations

import csv
import functools
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from tasks.real import transforms
from tasks.real.common import (read_json, read_text, VIDEO_EXTENSIONS, DatasetFormatError, SkipLog, carve_val,
                               check_split, find_first, require_dir, to_chw, to_thwc,
                               window_indices, window_start)
from tasks.real.video_io import read_video_frames, read_video_segment, video_duration

# A '<youtube_id>.mp4' no longer than its labelled segment plus this is the trimmed clip
# (some mirrors drop the _<start>_<end> suffix); a longer one is the untrimmed video.
TRIMMED_SLACK_S = 1.0

SPLIT_ALIASES = {"train": ("train",), "val": ("val", "validate", "validation"), "test": ("test",)}


class VideoClassificationDataset(SkipLog):
    """Clips on disk with integer labels; see the module docstring for the item keys.

    samples: (path, label, segment) with segment None for a trimmed clip, or (time_start,
    time_end) seconds when `path` is the untrimmed video the clip was cut from.
    """

    def __init__(self, samples: Sequence[tuple[Path, int, tuple[float, float] | None]], *,
                 image_size: int, train: bool,
                 num_frames: int = 17, stride: int = 1, flip: bool = True, backend: str = "auto",
                 skipped: Sequence[tuple[str, str]] = (), name: str = "videos"):
        self.samples = list(samples)
        self.skipped = list(skipped)
        if not self.samples:
            raise DatasetFormatError(f"{name}: no clips found on disk "
                                     f"({len(self.skipped)} listed clips are missing)")
        self.num_frames, self.stride, self.train, self.backend = num_frames, stride, train, backend
        self.transform = transforms.clip_transform(image_size, train, flip=flip)
        self._report_skips(name)

    def __len__(self) -> int:
        return len(self.samples)

    def _read(self, path: Path, segment: tuple[float, float] | None, indices=None) -> np.ndarray:
        """uint8 (T, H, W, 3): a trimmed clip whole, an untrimmed video inside its segment only.
        indices: num_available -> frame indices (default `frame_indices`)."""
        indices = indices or self.frame_indices
        if segment is None:
            return read_video_frames(path, indices, backend=self.backend)
        start, end = segment
        duration = video_duration(path)
        if duration is not None and duration <= (end - start) + TRIMMED_SLACK_S:
            # As long as the segment: this <youtube_id>.mp4 is the trimmed clip itself.
            return read_video_frames(path, indices, backend=self.backend)
        return read_video_segment(path, indices, start, end)

    def frame_indices(self, num_available: int) -> torch.Tensor:
        """Indices into a video of `num_available` frames: random window (train) or centre."""
        span = (self.num_frames - 1) * self.stride + 1
        start = window_start(num_available, span, "random" if self.train else "center")
        return window_indices(start, self.num_frames, self.stride, num_available)

    def view_indices(self, num_available: int, view: int, num_views: int) -> np.ndarray:
        """Indices of window `view` of `num_views` evenly spaced over the video (first to last
        start that fits; one view = the centre window): multi-clip evaluation."""
        span = (self.num_frames - 1) * self.stride + 1
        last = max(num_available - span, 0)
        start = last // 2 if num_views == 1 else round(view * last / (num_views - 1))
        return window_indices(start, self.num_frames, self.stride, num_available)

    def clip(self, i: int, view: int, num_views: int) -> dict[str, torch.Tensor]:
        """Item i seen through view `view` of `num_views` windows (tasks/task.py ClipView)."""
        return self.__getitem__(i, functools.partial(self.view_indices, view=view, num_views=num_views))

    def __getitem__(self, i: int, indices=None) -> dict[str, torch.Tensor]:
        path, label, segment = self.samples[i]
        frames = self._read(path, segment, indices)
        clip = transforms.apply_to_clip(self.transform, to_chw(frames))
        return {"video": to_thwc(clip), "index": torch.tensor(i), "label": torch.tensor(label)}


# ----------------------------------------------------------------------------- class lists

def _index_videos(folder: Path) -> dict[str, Path]:
    """Every video file under `folder` by its stem (file name without extension)."""
    return {p.stem: p for p in sorted(folder.rglob("*")) if p.suffix.lower() in VIDEO_EXTENSIONS}


def _split_folder(root: Path, split: str) -> Path | None:
    for alias in SPLIT_ALIASES.get(split, (split,)):
        if (root / alias).is_dir():
            return root / alias
    return None


def _kinetics_csv(root: Path, split: str) -> Path | None:
    for alias in SPLIT_ALIASES.get(split, (split,)):
        for cand in (root / "annotations" / f"{alias}.csv", root / f"{alias}.csv"):
            if cand.is_file():
                return cand
    return None


def _read_csv_rows(path: Path, required: Sequence[str]) -> list[dict]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetFormatError(f"{path}: missing column(s) {missing}; found "
                                     f"{reader.fieldnames}, expected {list(required)}")
        return list(reader)


def kinetics_classes(root: Path) -> list[str]:
    """`classes.txt`, else the sorted labels of the training CSV / metadata / class folders."""
    if (root / "classes.txt").is_file():
        return [ln.strip() for ln in read_text(root / "classes.txt").splitlines() if ln.strip()]
    train_csv = _kinetics_csv(root, "train")
    if train_csv is not None:
        return sorted({r["label"] for r in _read_csv_rows(train_csv, ["label"])})
    train_dir = _split_folder(root, "train")
    if train_dir is not None and (train_dir / "metadata.csv").is_file():
        labels = {r["label"] for r in _read_csv_rows(train_dir / "metadata.csv", ["file_name", "label"])}
        if all(lbl.isdigit() for lbl in labels):
            raise DatasetFormatError(f"{train_dir / 'metadata.csv'} has integer labels; put the "
                                     f"class names, one per line, in {root / 'classes.txt'}")
        return sorted(labels)
    if train_dir is not None:
        return sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    raise DatasetFormatError(f"Kinetics class list not found under {root}: expected "
                             f"classes.txt, annotations/train.csv or a train/ folder")


def _label_of(name: str, lookup: dict[str, int], where: str) -> int:
    if name.isdigit() and name not in lookup:
        value = int(name)
        if 0 <= value < len(lookup):
            return value
    if name not in lookup:
        raise DatasetFormatError(f"{where}: label '{name}' is not in the class list "
                                 f"({len(lookup)} classes); expected one of the training labels")
    return lookup[name]


def kinetics_samples(root: Path, split: str, classes: Sequence[str]
                     ) -> tuple[list[tuple[Path, int]], list[tuple[str, str]]]:
    """(samples [(path, label)], skipped [(clip, reason)]) of one Kinetics split."""
    lookup = {c: i for i, c in enumerate(classes)}
    split_dir = _split_folder(root, split)
    csv_path = _kinetics_csv(root, split)
    samples, skipped = [], []
    if csv_path is not None:
        if split_dir is None:
            raise DatasetFormatError(f"{csv_path} lists the '{split}' clips but the folder "
                                     f"{root / split} holding them does not exist")
        videos = _index_videos(split_dir)
        rows = _read_csv_rows(csv_path, ["label", "youtube_id", "time_start", "time_end"])
        for lineno, row in enumerate(rows, 2):
            label = _label_of(row["label"], lookup, f"{csv_path}:{lineno}")
            start, end = float(row["time_start"]), float(row["time_end"])
            if not end > start >= 0:
                raise DatasetFormatError(f"{csv_path}:{lineno}: segment [{row['time_start']}, "
                                         f"{row['time_end']}] of '{row['youtube_id']}' is empty or "
                                         f"negative; expected time_start < time_end in seconds")
            key = f"{row['youtube_id']}_{int(start):06d}_{int(end):06d}"
            if key in videos:
                samples.append((videos[key], label, None))
            elif row["youtube_id"] in videos:
                # An untrimmed download: read only inside the labelled segment, never elsewhere.
                samples.append((videos[row["youtube_id"]], label, (start, end)))
            else:
                skipped.append((str(split_dir / key), "listed in the CSV, not on disk"))
        return samples, skipped
    if split_dir is None:
        raise DatasetFormatError(f"Kinetics split '{split}' not found: expected "
                                 f"{root}/annotations/{split}.csv or the folder {root}/{split}/")
    if (split_dir / "metadata.csv").is_file():
        meta = split_dir / "metadata.csv"
        for lineno, row in enumerate(_read_csv_rows(meta, ["file_name", "label"]), 2):
            path = split_dir / row["file_name"]
            if not path.is_file():
                skipped.append((str(path), "listed in metadata.csv, not on disk"))
                continue
            samples.append((path, _label_of(row["label"], lookup, f"{meta}:{lineno}"), None))
        return samples, skipped
    for folder in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        label = _label_of(folder.name, lookup, f"class folder {folder}")
        samples += [(p, label, None) for p in _index_videos(folder).values()]
    return samples, skipped


def ssv2_samples(root: Path, split: str) -> tuple[list[tuple[Path, int, None]], list[tuple[str, str]], int]:
    """(samples, skipped, num_classes) of the official SSv2 split 'train' or 'val' (validation.json)."""
    # The current package puts the json files under labels/; the 20BN release had them at the
    # root, prefixed something-something-v2-.
    labels_path = find_first([root / "labels" / "labels.json", root / "labels.json",
                              root / "something-something-v2-labels.json"],
                             "SSv2 label map (template -> id)", root)
    label_map = read_json(labels_path)
    try:
        templates = {k: int(v) for k, v in label_map.items()}
    except (AttributeError, TypeError, ValueError):
        raise DatasetFormatError(f"{labels_path}: expected a JSON object template -> integer id "
                                 f"(the official labels.json)") from None
    name = {"train": "train", "val": "validation"}.get(split, split)
    list_path = find_first([labels_path.parent / f"{name}.json", root / f"{name}.json",
                            root / f"something-something-v2-{name}.json"],
                           f"SSv2 '{name}' list", root)
    video_dir = find_first([root / "videos", root / "20bn-something-something-v2", root],
                           "SSv2 video folder", root)
    videos = _index_videos(video_dir) if video_dir != root else {
        p.stem: p for p in root.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS}
    samples, skipped = [], []
    entries = read_json(list_path)
    if not isinstance(entries, list) or not all(isinstance(e, dict) and {"id", "template"} <= set(e)
                                                for e in entries):
        raise DatasetFormatError(f"{list_path}: expected a JSON list of objects with 'id' and "
                                 f"'template' (the official {name}.json)")
    for entry in entries:
        template = entry["template"].replace("[", "").replace("]", "")
        if template not in templates:
            raise DatasetFormatError(f"{list_path}: entry {entry['id']} has template "
                                     f"'{template}', which {labels_path} does not list")
        label = templates[template]
        if not 0 <= label < len(templates):
            raise DatasetFormatError(f"{labels_path}: id {label} of '{template}' outside "
                                     f"[0, {len(templates)})")
        path = videos.get(str(entry["id"]))
        if path is None:
            skipped.append((str(video_dir / f"{entry['id']}.webm"), "listed in the json, not on disk"))
            continue
        samples.append((path, label, None))
    return samples, skipped, len(templates)


def _official(split: str) -> str:
    """Our split -> the official split it is read from: 'test' is the official validation."""
    return {"train": "train", "val": "train", "test": "val"}[check_split(split, "video dataset")]


def video_split(dataset: str, root: str | Path, split: str, num_classes: int | None, *,
                image_size: int = 128, num_frames: int = 17, stride: int | None = None,
                backend: str = "auto", val_fraction: float = 0.02,
                split_seed: int = 0) -> VideoClassificationDataset:
    """One split of Kinetics ('kinetics') or SSv2 ('ssv2') as a torch-style Dataset.

    split: 'test' (the official validation split, what the paper reports), or 'train' / 'val'
    (a seeded partition of the official training split by clip: common.carve_val).
    num_classes: the expected class count (400, 700, 174) checked against the class list
    found; None accepts what is found. stride: None = the paper's (1 Kinetics, 2 SSv2).
    """
    root = require_dir(root, f"{dataset} root", "Point the gin macro at the dataset folder.")
    official = _official(split)
    if dataset == "ssv2":
        samples, skipped, found = ssv2_samples(root, official)
        stride, flip = stride or 2, False
    else:
        classes = kinetics_classes(root)
        samples, skipped = kinetics_samples(root, official, classes)
        found, stride, flip = len(classes), stride or 1, True
    if num_classes is not None and found != num_classes:
        raise DatasetFormatError(f"{dataset} at {root}: the class list has {found} classes, "
                                 f"expected {num_classes}; set num_classes={found} (or None) to "
                                 f"probe a subset on purpose")
    if split != "test":
        # One key per clip (an untrimmed file with two segments gives two clips).
        keys = [p.name if seg is None else f"{p.name}@{seg[0]:g}-{seg[1]:g}" for p, _, seg in samples]
        samples = carve_val(samples, keys, split, val_fraction=val_fraction, seed=split_seed,
                            what=f"{dataset} at {root}")
    # Clips missing from the official training split are counted once, in 'train'.
    skipped = [] if split == "val" else skipped
    ds = VideoClassificationDataset(samples, image_size=image_size, train=split == "train",
                                    num_frames=num_frames, stride=stride, flip=flip,
                                    backend=backend, skipped=skipped, name=f"{dataset}/{split}")
    ds.num_classes = found
    return ds
