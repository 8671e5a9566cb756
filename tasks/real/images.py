"""Image classification readers: ImageNet-1k, Places365-Standard, iNaturalist 2018.

Layouts (docs/real_datasets.md has the full trees), tried in this order by layout='auto':

* 'list'        the official label lists: ImageNet `LOC_val_solution.csv` (+ `LOC_synset_mapping.txt`)
                for a flat `val/`; Places365 `places365_train_standard.txt` / `places365_val.txt`
                ('relative/path label') over `data_256/` / `val_256/`; iNat2018 COCO-style
                `train2018.json` / `val2018.json` over the image root.
* 'imagefolder' `<root>/<split>/<class>/<image>`; classes are the sorted folder names of the
                training split, and the evaluation split must use the same names.
* 'parquet'     the HF hub export: `<root>/data/<split>-*.parquet` (also `validation-*`) with an
                `image` column ({bytes, path}) and an integer `label` column, read through HF
                `datasets` (memory-mapped Arrow cache in `cache_dir`).

Items: video uint8 (1, size, size, 3), index int64 (), label int64 () in [0, num_classes).
Training split: inception crop + flip; evaluation: resize + centre crop (tasks/real/transforms.py).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from tasks.real import transforms
from tasks.real.common import (IMAGE_EXTENSIONS, DatasetFormatError, SkipLog, decode_image,
                               require_dir, to_chw, to_thwc)

SPLIT_ALIASES = {"train": ("train",), "val": ("val", "validation"), "test": ("test",)}


# ----------------------------------------------------------------------------- sample lists

def _check_label(label: int, num_classes: int, where: str) -> int:
    if not 0 <= label < num_classes:
        raise DatasetFormatError(f"label {label} outside the class list [0, {num_classes}) in "
                                 f"{where}; expected the dataset's {num_classes} classes (check "
                                 f"the label file, or set num_classes)")
    return label


def imagefolder_samples(split_dir: Path, classes: Sequence[str] | None = None
                        ) -> tuple[list[tuple[Path, int]], list[str]]:
    """`<split_dir>/<class>/**/<image>` -> ([(path, label)], classes).

    classes: the class list to map folder names onto (the training split's); None takes the
    sorted folder names. A folder that is not in `classes` is an error (label outside the list).
    """
    folders = sorted(p for p in split_dir.iterdir() if p.is_dir())
    if not folders:
        raise DatasetFormatError(f"{split_dir} has no class sub-folders; expected "
                                 f"{split_dir}/<class>/<image>.jpg (imagefolder layout)")
    names = [f.name for f in folders]
    classes = list(classes) if classes is not None else names
    lookup = {c: i for i, c in enumerate(classes)}
    samples = []
    for folder in folders:
        if folder.name not in lookup:
            raise DatasetFormatError(f"class folder {folder} is not in the class list of the "
                                     f"training split ({len(classes)} classes); expected one of "
                                     f"the training folder names")
        for p in sorted(folder.rglob("*")):
            if p.suffix.lower() in IMAGE_EXTENSIONS:
                samples.append((p, lookup[folder.name]))
    return samples, classes


def list_file_samples(list_file: Path, image_root: Path, num_classes: int
                      ) -> list[tuple[Path, int]]:
    """Lines 'relative/path label' (Places365 lists) -> [(image_root / path, label)]."""
    samples = []
    for lineno, line in enumerate(list_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DatasetFormatError(f"{list_file}:{lineno}: expected 'relative/path label', "
                                     f"got {line!r}")
        label = _check_label(int(parts[1]), num_classes, f"{list_file}:{lineno}")
        samples.append((image_root / parts[0].lstrip("/"), label))
    return samples


def imagenet_flat_val_samples(root: Path, val_dir: Path, classes: Sequence[str]
                              ) -> list[tuple[Path, int]]:
    """Flat ImageNet val + Kaggle's LOC_val_solution.csv (ImageId, 'wnid x y x y ...')."""
    csv_path = root / "LOC_val_solution.csv"
    lookup = {c: i for i, c in enumerate(classes)}
    samples = []
    with open(csv_path, newline="") as fh:
        for lineno, row in enumerate(csv.DictReader(fh), 2):
            wnid = row["PredictionString"].split()[0]
            if wnid not in lookup:
                raise DatasetFormatError(f"{csv_path}:{lineno}: class '{wnid}' is not in the "
                                         f"class list ({len(classes)} wnids)")
            samples.append((val_dir / f"{row['ImageId']}.JPEG", lookup[wnid]))
    return sorted(samples)


def coco_json_samples(json_path: Path, image_root: Path, num_classes: int
                      ) -> list[tuple[Path, int]]:
    """iNat-style COCO json (images, annotations with category_id) -> [(path, label)]."""
    meta = json.loads(json_path.read_text())
    for key in ("images", "annotations"):
        if key not in meta:
            raise DatasetFormatError(f"{json_path} has no '{key}' list; expected the COCO-style "
                                     f"iNaturalist annotation file")
    files = {im["id"]: im["file_name"] for im in meta["images"]}
    samples = []
    for ann in meta["annotations"]:
        where = f"{json_path} (annotation of image {ann['image_id']})"
        if ann["image_id"] not in files:
            raise DatasetFormatError(f"{where}: image id not in 'images'")
        samples.append((image_root / files[ann["image_id"]],
                        _check_label(int(ann["category_id"]), num_classes, where)))
    return samples


# ----------------------------------------------------------------------------- datasets

class ImageFileDataset(SkipLog):
    """Images on disk with integer labels; see the module docstring for the item keys."""

    def __init__(self, samples: Sequence[tuple[Path, int]], image_size: int, train: bool,
                 name: str = "images"):
        if not samples:
            raise DatasetFormatError(f"{name}: no images found")
        self.samples = list(samples)
        self.train = train
        self.transform = transforms.image_transform(image_size, train)
        self._report_skips(name)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        path, label = self.samples[i]
        image = to_chw(decode_image(path)[None])
        return {"video": to_thwc(self.transform(image)), "index": torch.tensor(i),
                "label": torch.tensor(label)}


class ParquetImageDataset(SkipLog):
    """The HF hub parquet export (image {bytes, path}, label), through HF `datasets`."""

    def __init__(self, files: Sequence[Path], num_classes: int, image_size: int, train: bool,
                 cache_dir: str | None = None):
        import datasets

        self.files = [str(f) for f in files]
        ds = datasets.load_dataset("parquet", data_files=self.files, split="train",
                                   cache_dir=cache_dir)
        if "image" not in ds.column_names or "label" not in ds.column_names:
            raise DatasetFormatError(f"parquet files {self.files[0]}...: columns "
                                     f"{ds.column_names}; expected 'image' and 'label'")
        # Decode ourselves, so a bad image names its row instead of failing inside Arrow.
        self.ds = ds.cast_column("image", datasets.Image(decode=False))
        labels = np.asarray(self.ds["label"])
        bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
        if bad.size:
            raise DatasetFormatError(f"parquet row {bad[0]} of {self.files}: label "
                                     f"{labels[bad[0]]} outside the class list [0, {num_classes})")
        self.transform = transforms.image_transform(image_size, train)
        self._report_skips("parquet")

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        row = self.ds[i]
        image = row["image"]
        data = image["bytes"] if image.get("bytes") else image["path"]
        pixels = decode_image(data, source=f"row {i} ({image.get('path')}) of {self.files[0]}...")
        return {"video": to_thwc(self.transform(to_chw(pixels[None]))), "index": torch.tensor(i),
                "label": torch.tensor(int(row["label"]))}


# ----------------------------------------------------------------------------- layouts

def _split_dir(root: Path, split: str) -> Path | None:
    for alias in SPLIT_ALIASES.get(split, (split,)):
        if (root / alias).is_dir():
            return root / alias
    return None


def _parquet_files(root: Path, split: str) -> list[Path]:
    files = []
    for alias in SPLIT_ALIASES.get(split, (split,)):
        files += sorted((root / "data").glob(f"{alias}-*.parquet"))
        files += sorted((root / "data" / alias).glob("*.parquet")) if (root / "data" / alias).is_dir() else []
    return files


def _list_layout(dataset: str, root: Path, split: str, num_classes: int, train_classes
                 ) -> list[tuple[Path, int]] | None:
    """The official label-list layout of `dataset`, or None when its files are absent."""
    if dataset == "places365":
        name = {"train": "places365_train_standard.txt", "val": "places365_val.txt"}.get(split)
        image_root = root / ("data_256" if split == "train" else "val_256")
        if name and (root / name).is_file():
            return list_file_samples(root / name, require_dir(image_root, "Places365 images"),
                                     num_classes)
    if dataset == "inat2018":
        path = root / {"train": "train2018.json", "val": "val2018.json"}.get(split, f"{split}2018.json")
        if path.is_file():
            return coco_json_samples(path, root, num_classes)
    if dataset == "imagenet" and split == "val" and (root / "LOC_val_solution.csv").is_file():
        val_dir = _split_dir(root, "val") or root / "ILSVRC/Data/CLS-LOC/val"
        if train_classes is None:
            mapping = root / "LOC_synset_mapping.txt"
            if not mapping.is_file():
                raise DatasetFormatError(f"flat ImageNet val needs the class list: expected "
                                         f"{mapping} or the training folders {root}/train/<wnid>")
            train_classes = [ln.split()[0] for ln in mapping.read_text().splitlines() if ln.strip()]
        if not any(p.is_dir() for p in val_dir.iterdir()):
            return imagenet_flat_val_samples(root, val_dir, train_classes)
    return None


def image_split(dataset: str, root: str | Path, split: str, num_classes: int, *,
                image_size: int = 128, layout: str = "auto", cache_dir: str | None = None):
    """One split of an image classification dataset as a torch-style Dataset.

    dataset: 'imagenet', 'places365' or 'inat2018' (selects the official list files).
    split: 'train' or 'val' (the original splits, paper App. D.1).
    layout: 'auto', 'list', 'imagefolder' or 'parquet'.
    """
    root = require_dir(root, f"{dataset} root", "Point the gin macro at the dataset folder.")
    train = split == "train"
    if layout in ("auto", "parquet") and _parquet_files(root, split):
        return ParquetImageDataset(_parquet_files(root, split), num_classes, image_size, train, cache_dir)
    train_dir = _split_dir(root, "train")
    train_classes = None
    if train_dir is not None and any(p.is_dir() for p in train_dir.iterdir()):
        train_classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if layout in ("auto", "list"):
        samples = _list_layout(dataset, root, split, num_classes, train_classes)
        if samples is not None:
            return ImageFileDataset(samples, image_size, train, name=f"{dataset}/{split}")
    split_dir = _split_dir(root, split)
    if layout in ("auto", "imagefolder") and split_dir is not None:
        samples, classes = imagefolder_samples(split_dir, None if train else train_classes)
        if len(classes) != num_classes:
            raise DatasetFormatError(f"{split_dir}: found {len(classes)} class folders, expected "
                                     f"{num_classes}; set num_classes={len(classes)} to probe a "
                                     f"subset on purpose")
        return ImageFileDataset(samples, image_size, train, name=f"{dataset}/{split}")
    raise DatasetFormatError(
        f"{dataset}: split '{split}' not found under {root} (layout '{layout}'); expected "
        f"{root}/{split}/<class>/<image> (imagefolder), {root}/data/{split}-*.parquet (HF export) "
        f"or the official list files (docs/real_datasets.md)")
