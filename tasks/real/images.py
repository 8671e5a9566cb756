"""Image classification readers: ImageNet-1k, Places365-Standard, iNaturalist 2018.

Layouts (docs/real_datasets.md has the full trees), tried in this order by layout='auto':

* 'list'        the official label files: ImageNet as Kaggle unpacks it (`ILSVRC/Data/CLS-LOC/
                {train,val}` + `LOC_val_solution.csv` + `LOC_synset_mapping.txt`, or train/ and a
                flat val/ with those files at the root); Places365 `places365_train_standard.txt`
                / `places365_val.txt` ('relative/path label') over the official `data_256/`,
                `data_large/`, `val_256/`, `val_large/` or torchvision's `data_256_standard/`,
                `data_large_standard/`; iNat2018 COCO-style `train2018.json` / `val2018.json`.
* 'imagefolder' `<root>/<split>/<class>/<image>`; classes are the sorted folder names of the
                training split, and the evaluation split must use the same names.
* 'parquet'     the HF hub export: `<root>/data/<split>-*.parquet` (also `validation-*`) with an
                `image` column ({bytes, path}) and an integer `label` column, read through HF
                `datasets` (memory-mapped Arrow cache in `cache_dir`).

A root matching none of them is refused with what was found there and what was expected.
Splits: 'test' is the official validation set; 'train' / 'val' partition the official training
images (common.carve_val, keyed by the path relative to the root, or the parquet row).

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
from tasks.real.common import (read_json, read_text, IMAGE_EXTENSIONS, DatasetFormatError, SkipLog, carve_val,
                               check_split, decode_image, describe_dir, require_dir, to_chw,
                               to_thwc)

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
    for lineno, line in enumerate(read_text(list_file).splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DatasetFormatError(f"{list_file}:{lineno}: expected 'relative/path label', "
                                     f"got {line!r}")
        label = _check_label(int(parts[1]), num_classes, f"{list_file}:{lineno}")
        samples.append((image_root / parts[0].lstrip("/"), label))
    return samples


def imagenet_flat_val_samples(csv_path: Path, val_dir: Path, classes: Sequence[str]
                              ) -> list[tuple[Path, int]]:
    """Flat ImageNet val + Kaggle's LOC_val_solution.csv (ImageId, 'wnid x y x y ...')."""
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
    meta = read_json(json_path)
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

    def select(self, rows: Sequence[int]) -> "ParquetImageDataset":
        """This dataset restricted to `rows` (a carved split), items re-indexed from 0."""
        self.ds = self.ds.select(list(rows))
        return self

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


def _has_subdirs(folder: Path) -> bool:
    return any(p.is_dir() for p in folder.iterdir())


def _imagenet_samples(root: Path, official: str, num_classes: int) -> list[tuple[Path, int]] | None:
    """ImageNet as unpacked from Kaggle (imagenet-object-localization-challenge), or the same
    files with train/ and a flat val/ at the root. None when neither is there."""
    data = root / "ILSVRC" / "Data" / "CLS-LOC"
    base = data if data.is_dir() else root
    csv_path = next((p for p in (root / "LOC_val_solution.csv", base / "LOC_val_solution.csv")
                     if p.is_file()), None)
    mapping = next((p for p in (root / "LOC_synset_mapping.txt", base / "LOC_synset_mapping.txt")
                    if p.is_file()), None)
    if not data.is_dir() and csv_path is None:
        return None
    if mapping is not None:       # Kaggle's class order: the synsets as listed (sorted wnids)
        classes = [ln.split()[0] for ln in read_text(mapping).splitlines() if ln.strip()]
    elif (base / "train").is_dir():
        classes = sorted(p.name for p in (base / "train").iterdir() if p.is_dir())
    else:
        raise DatasetFormatError(f"ImageNet at {root}: the class list is needed; expected "
                                 f"{root / 'LOC_synset_mapping.txt'} or the folders {base}/train/<wnid>")
    if len(classes) != num_classes:
        raise DatasetFormatError(f"ImageNet at {root}: {len(classes)} classes found, expected "
                                 f"{num_classes}; set num_classes={len(classes)} to probe a subset")
    if official == "train":
        train_dir = require_dir(base / "train", "ImageNet training images",
                                f"expected {base}/train/<wnid>/<wnid>_<n>.JPEG (Kaggle: ILSVRC/Data/CLS-LOC/train)")
        return imagefolder_samples(train_dir, classes)[0]
    val_dir = require_dir(base / "val", "ImageNet validation images",
                          f"expected {base}/val/ILSVRC2012_val_<n>.JPEG (Kaggle: ILSVRC/Data/CLS-LOC/val)")
    if _has_subdirs(val_dir):      # re-foldered by class (valprep.sh)
        return imagefolder_samples(val_dir, classes)[0]
    if csv_path is None:
        raise DatasetFormatError(f"ImageNet at {root}: found a flat {val_dir} but no labels for it; "
                                 f"expected Kaggle's LOC_val_solution.csv at {root} (ImageId, "
                                 f"PredictionString) or val/ re-foldered into val/<wnid>/")
    return imagenet_flat_val_samples(csv_path, val_dir, classes)


PLACES_IMAGE_DIRS = {
    # official tars (train_256_places365standard.tar -> data_256/, ..._large_... -> data_large/),
    # and torchvision.datasets.Places365, which renames them data_256_standard / data_large_standard.
    "train": ("data_256_standard", "data_256", "data_large_standard", "data_large"),
    "val": ("val_256", "val_large"),
}


def _places365_samples(root: Path, official: str, num_classes: int) -> list[tuple[Path, int]] | None:
    """Places365-Standard from its file lists over the official or torchvision image folders
    (256 x 256 preferred when both resolutions are there). None when the list is absent."""
    name = {"train": "places365_train_standard.txt", "val": "places365_val.txt"}[official]
    if not (root / name).is_file():
        return None
    image_root = next((root / d for d in PLACES_IMAGE_DIRS[official] if (root / d).is_dir()), None)
    if image_root is None:
        raise DatasetFormatError(
            f"Places365 at {root}: {name} is there but not its images; expected one of "
            f"{', '.join(d + '/' for d in PLACES_IMAGE_DIRS[official])} (found: {describe_dir(root)})")
    return list_file_samples(root / name, image_root, num_classes)


def _inat_samples(root: Path, official: str, num_classes: int) -> list[tuple[Path, int]] | None:
    path = root / f"{official}2018.json"
    return coco_json_samples(path, root, num_classes) if path.is_file() else None


LIST_LAYOUTS = {"imagenet": _imagenet_samples, "places365": _places365_samples,
                "inat2018": _inat_samples}

EXPECTED = {
    "imagenet": "train/<wnid>/*.JPEG + val/<wnid>/*.JPEG (imagefolder), Kaggle's "
                "ILSVRC/Data/CLS-LOC/{train,val} + LOC_val_solution.csv + LOC_synset_mapping.txt, "
                "or data/{train,validation}-*.parquet (HF export)",
    "places365": "places365_train_standard.txt + places365_val.txt over data_256/ (or "
                 "data_256_standard/, data_large/, data_large_standard/) and val_256/ (or "
                 "val_large/), imagefolder train/ + val/, or data/*.parquet",
    "inat2018": "train2018.json + val2018.json over train_val2018/, imagefolder, or data/*.parquet",
}


def image_split(dataset: str, root: str | Path, split: str, num_classes: int, *,
                image_size: int = 128, layout: str = "auto", cache_dir: str | None = None,
                val_fraction: float = 0.01, split_seed: int = 0):
    """One split of an image classification dataset as a torch-style Dataset.

    dataset: 'imagenet', 'places365' or 'inat2018' (selects the official list files).
    split: 'test' (the official validation images, what the paper reports) or 'train' / 'val'
      (a seeded partition of the official training images: common.carve_val).
    layout: 'auto', 'list' (the official label files), 'imagefolder' or 'parquet'.
    """
    root = require_dir(root, f"{dataset} root", "Point the gin macro at the dataset folder.")
    official = {"train": "train", "val": "train", "test": "val"}[check_split(split, dataset)]
    train, name = split == "train", f"{dataset}/{split}"

    def carve(items: list, keys: list[str]) -> list:
        if split == "test":
            return items
        return carve_val(items, keys, split, val_fraction=val_fraction, seed=split_seed,
                         what=f"{dataset} at {root}")

    if layout in ("auto", "parquet") and _parquet_files(root, official):
        files = _parquet_files(root, official)
        probe = ParquetImageDataset(files, num_classes, image_size, train, cache_dir)
        rows = list(range(len(probe.ds)))
        return probe.select(carve(rows, [str(r) for r in rows])) if split != "test" else probe
    samples = None
    if layout in ("auto", "list"):
        samples = LIST_LAYOUTS[dataset](root, official, num_classes)
    if samples is None and layout in ("auto", "imagefolder"):
        split_dir = _split_dir(root, official)
        train_dir = _split_dir(root, "train")
        if split_dir is not None and train_dir is not None and _has_subdirs(train_dir):
            classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
            if len(classes) != num_classes:
                raise DatasetFormatError(f"{train_dir}: found {len(classes)} class folders, "
                                         f"expected {num_classes}; set num_classes={len(classes)} "
                                         f"to probe a subset on purpose")
            samples = imagefolder_samples(split_dir, classes)[0]
    if samples is None:
        raise DatasetFormatError(
            f"{dataset}: no known layout for split '{split}' (official '{official}') under {root} "
            f"(layout '{layout}'); found: {describe_dir(root)}. Expected {EXPECTED[dataset]} "
            f"(docs/real_datasets.md)")
    samples = carve(samples, [str(p.relative_to(root)) if p.is_relative_to(root) else str(p)
                              for p, _ in samples])
    return ImageFileDataset(samples, image_size, train, name=name)
