"""Action recognition readers: Kinetics-400 / 700 and Something-Something v2.

Layouts (docs/real_datasets.md has the full trees):

* Kinetics, CSV: `<root>/annotations/<split>.csv` (or `<root>/<split>.csv`) with columns
  `label, youtube_id, time_start, time_end, split`; clips anywhere under `<root>/<split>/`,
  named `<youtube_id>_<start:06d>_<end:06d>.<ext>` (the CVDF mirror) or `<youtube_id>.<ext>`.
* Kinetics, videofolder: `<root>/<split>/metadata.csv` (`file_name, label`), or
  `<root>/<split>/<class name>/<clip>.<ext>`.
* SSv2: `<root>/labels.json` (template -> id), `<root>/train.json` / `validation.json`
  (entries: id, template, ...), videos `<root>/videos/<id>.webm` (also the 20BN names:
  `something-something-v2-*.json`, `20bn-something-something-v2/<id>.webm`).

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
import json
from pathlib import Path
from typing import Sequence

import torch

from tasks.real import transforms
from tasks.real.common import (VIDEO_EXTENSIONS, DatasetFormatError, SkipLog, find_first,
                               require_dir, to_chw, to_thwc, window_indices, window_start)
from tasks.real.video_io import read_video_frames

SPLIT_ALIASES = {"train": ("train",), "val": ("val", "validate", "validation"), "test": ("test",)}


class VideoClassificationDataset(SkipLog):
    """Clips on disk with integer labels; see the module docstring for the item keys."""

    def __init__(self, samples: Sequence[tuple[Path, int]], *, image_size: int, train: bool,
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

    def frame_indices(self, num_available: int) -> torch.Tensor:
        """Indices into a video of `num_available` frames: random window (train) or centre."""
        span = (self.num_frames - 1) * self.stride + 1
        start = window_start(num_available, span, "random" if self.train else "center")
        return window_indices(start, self.num_frames, self.stride, num_available)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        path, label = self.samples[i]
        frames = read_video_frames(path, self.frame_indices, backend=self.backend)
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
        return [ln.strip() for ln in (root / "classes.txt").read_text().splitlines() if ln.strip()]
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
            key = f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}"
            path = videos.get(key) or videos.get(row["youtube_id"])
            if path is None:
                skipped.append((str(split_dir / key), "listed in the CSV, not on disk"))
                continue
            samples.append((path, label))
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
            samples.append((path, _label_of(row["label"], lookup, f"{meta}:{lineno}")))
        return samples, skipped
    for folder in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        label = _label_of(folder.name, lookup, f"class folder {folder}")
        samples += [(p, label) for p in _index_videos(folder).values()]
    return samples, skipped


def ssv2_samples(root: Path, split: str) -> tuple[list[tuple[Path, int]], list[tuple[str, str]], int]:
    """(samples, skipped, num_classes) of one SSv2 split from the 20BN json files."""
    labels_path = find_first([root / "labels.json", root / "something-something-v2-labels.json"],
                             "SSv2 label map (template -> id)")
    templates = {k: int(v) for k, v in json.loads(labels_path.read_text()).items()}
    name = {"train": "train", "val": "validation"}.get(split, split)
    list_path = find_first([root / f"{name}.json", root / f"something-something-v2-{name}.json"],
                           f"SSv2 '{split}' list")
    video_dir = find_first([root / "videos", root / "20bn-something-something-v2", root],
                           "SSv2 video folder")
    videos = _index_videos(video_dir) if video_dir != root else {
        p.stem: p for p in root.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS}
    samples, skipped = [], []
    for entry in json.loads(list_path.read_text()):
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
        samples.append((path, label))
    return samples, skipped, len(templates)


def video_split(dataset: str, root: str | Path, split: str, num_classes: int | None, *,
                image_size: int = 128, num_frames: int = 17, stride: int | None = None,
                backend: str = "auto") -> VideoClassificationDataset:
    """One split of Kinetics ('kinetics') or SSv2 ('ssv2') as a torch-style Dataset.

    num_classes: the expected class count (400, 700, 174) checked against the class list
    found; None accepts what is found. stride: None = the paper's (1 Kinetics, 2 SSv2).
    """
    root = require_dir(root, f"{dataset} root", "Point the gin macro at the dataset folder.")
    if dataset == "ssv2":
        samples, skipped, found = ssv2_samples(root, split)
        stride, flip = stride or 2, False
    else:
        classes = kinetics_classes(root)
        samples, skipped = kinetics_samples(root, split, classes)
        found, stride, flip = len(classes), stride or 1, True
    if num_classes is not None and found != num_classes:
        raise DatasetFormatError(f"{dataset} at {root}: the class list has {found} classes, "
                                 f"expected {num_classes}; set num_classes={found} (or None) to "
                                 f"probe a subset on purpose")
    ds = VideoClassificationDataset(samples, image_size=image_size, train=split == "train",
                                    num_frames=num_frames, stride=stride, flip=flip,
                                    backend=backend, skipped=skipped, name=f"{dataset}/{split}")
    ds.num_classes = found
    return ds
