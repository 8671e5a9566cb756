"""Image classification readers on tiny ImageNet / Places365 / iNat2018 / parquet fixtures."""

import csv

import numpy as np
import pytest
import torch

from tasks.real.common import DatasetFormatError
from tasks.real.images import image_split

S = 16
WNIDS = ["n01", "n02", "n03"]


@pytest.fixture
def imagefolder(tmp_path, jpeg):
    for split, per_class in (("train", 2), ("val", 1)):
        for c, wnid in enumerate(WNIDS):
            for j in range(per_class):
                jpeg(tmp_path / split / wnid / f"{wnid}_{j}.JPEG", value=40 * c + 20)
    return tmp_path


@pytest.mark.parametrize("split,count", [("train", 4), ("val", 2), ("test", 3)])
def test_imagefolder_shapes_labels(imagefolder, split, count):
    ds = image_split("imagenet", imagefolder, split, 3, image_size=S, val_fraction=0.3)
    assert len(ds) == count and ds.skipped == []
    labels = []
    for i in range(len(ds)):
        item = ds[i]
        assert item["video"].shape == (1, S, S, 3) and item["video"].dtype == torch.uint8
        assert item["index"].item() == i
        labels.append(item["label"].item())
        # Flat grey images: the class is readable from the pixel value.
        assert abs(item["video"].float().mean().item() - (40 * labels[-1] + 20)) < 3
    if split == "test":
        assert sorted(set(labels)) == [0, 1, 2]


def test_val_is_carved_from_train_disjoint_and_deterministic(imagefolder):
    train = image_split("imagenet", imagefolder, "train", 3, image_size=S, val_fraction=0.3)
    val = image_split("imagenet", imagefolder, "val", 3, image_size=S, val_fraction=0.3)
    train_paths, val_paths = {p for p, _ in train.samples}, {p for p, _ in val.samples}
    assert not train_paths & val_paths and len(train_paths | val_paths) == 6
    assert all("/train/" in str(p) for p in val_paths)
    again = image_split("imagenet", imagefolder, "val", 3, image_size=S, val_fraction=0.3)
    assert again.samples == val.samples
    other = image_split("imagenet", imagefolder, "val", 3, image_size=S, val_fraction=0.3, split_seed=1)
    assert other.samples != val.samples          # the seed chooses the held-out images
    # Evaluation transforms on val: no random crop, so an item is the same on every read.
    assert torch.equal(val[0]["video"], val[0]["video"])


def test_eval_transform_is_deterministic(imagefolder):
    ds = image_split("imagenet", imagefolder, "test", 3, image_size=S)
    assert torch.equal(ds[0]["video"], ds[0]["video"])


def test_flat_val_with_kaggle_csv(imagefolder, jpeg):
    import shutil
    shutil.rmtree(imagefolder / "val")
    rows = [("ILSVRC2012_val_1", "n03 1 2 3 4"), ("ILSVRC2012_val_2", "n01 1 2 3 4")]
    for name, _ in rows:
        jpeg(imagefolder / "val" / f"{name}.JPEG")
    with open(imagefolder / "LOC_val_solution.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["ImageId", "PredictionString"])
        w.writerows(rows)
    ds = image_split("imagenet", imagefolder, "test", 3, image_size=S)
    # Samples are sorted by path: val_1 is an n03 image (class 2), val_2 an n01 one (class 0).
    assert [ds[i]["label"].item() for i in range(2)] == [2, 0]


def test_places365_lists(tmp_path, jpeg):
    jpeg(tmp_path / "data_256/a/airfield/00000001.jpg")
    jpeg(tmp_path / "data_256/b/bar/00000001.jpg")
    (tmp_path / "places365_train_standard.txt").write_text("/a/airfield/00000001.jpg 0\n/b/bar/00000001.jpg 1\n")
    jpeg(tmp_path / "val_256/Places365_val_00000001.jpg")
    (tmp_path / "places365_val.txt").write_text("Places365_val_00000001.jpg 1\n")
    train = image_split("places365", tmp_path, "train", 2, image_size=S)
    val = image_split("places365", tmp_path, "val", 2, image_size=S)
    test = image_split("places365", tmp_path, "test", 2, image_size=S)
    assert sorted([train[0]["label"].item(), val[0]["label"].item()]) == [0, 1]
    assert test[0]["label"].item() == 1
    (tmp_path / "places365_val.txt").write_text("Places365_val_00000001.jpg 7\n")
    with pytest.raises(DatasetFormatError, match=r"label 7 outside.*places365_val.txt:1"):
        image_split("places365", tmp_path, "test", 2, image_size=S)


def test_inat_coco_json(tmp_path, jpeg, write_json):
    for split, ids in (("train", [0, 1, 1]), ("val", [1])):
        images, anns = [], []
        for n, cat in enumerate(ids):
            rel = f"train_val2018/Plantae/{cat}/{split}{n}.jpg"
            jpeg(tmp_path / rel)
            images.append({"id": n, "file_name": rel})
            anns.append({"id": n, "image_id": n, "category_id": cat})
        write_json(tmp_path / f"{split}2018.json", {"images": images, "annotations": anns,
                                                     "categories": [{"id": 0}, {"id": 1}]})
    ds = image_split("inat2018", tmp_path, "train", 2, image_size=S)
    val = image_split("inat2018", tmp_path, "val", 2, image_size=S)
    assert len(ds) == 2 and len(val) == 1
    assert sorted([ds[0]["label"].item(), ds[1]["label"].item(), val[0]["label"].item()]) == [0, 1, 1]
    with pytest.raises(DatasetFormatError, match="label 1 outside the class list"):
        image_split("inat2018", tmp_path, "test", 1, image_size=S)


def test_parquet_export(tmp_path, jpeg):
    import io
    import pyarrow as pa
    import pyarrow.parquet as pq

    def encoded(value):
        buf = io.BytesIO()
        from PIL import Image
        Image.fromarray(np.full((12, 20, 3), value, np.uint8)).save(buf, format="JPEG")
        return buf.getvalue()

    (tmp_path / "data").mkdir()
    for split, labels in (("train", [0, 1, 2]), ("validation", [2])):
        table = pa.table({"image": [{"bytes": encoded(40 * l + 20), "path": f"{split}{i}.jpg"}
                                    for i, l in enumerate(labels)], "label": labels})
        pq.write_table(table, tmp_path / "data" / f"{split}-00000-of-00001.parquet")
    ds = image_split("imagenet", tmp_path, "test", 3, image_size=S, cache_dir=str(tmp_path / "cache"))
    item = ds[0]
    assert item["video"].shape == (1, S, S, 3) and item["label"].item() == 2
    assert abs(item["video"].float().mean().item() - 100) < 3
    with pytest.raises(DatasetFormatError, match="label 2 outside the class list"):
        image_split("imagenet", tmp_path, "train", 2, image_size=S, cache_dir=str(tmp_path / "cache"))


def test_bad_inputs(imagefolder, tmp_path):
    with pytest.raises(DatasetFormatError, match="folder not found"):
        image_split("imagenet", tmp_path / "missing", "train", 3)
    with pytest.raises(DatasetFormatError, match="split 'validation' not found"):
        image_split("imagenet", imagefolder, "validation", 3)
    with pytest.raises(DatasetFormatError, match="found 3 class folders, expected 1000"):
        image_split("imagenet", imagefolder, "train", 1000)
    (imagefolder / "val" / "n99").mkdir()
    with pytest.raises(DatasetFormatError, match="n99 is not in the class list"):
        image_split("imagenet", imagefolder, "test", 3)


def test_undecodable_image_names_file(imagefolder):
    bad = imagefolder / "val" / "n01" / "n01_0.JPEG"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    ds = image_split("imagenet", imagefolder, "test", 3, image_size=S)
    with pytest.raises(DatasetFormatError, match=r"does not decode: .*n01_0.JPEG"):
        ds[0]


def write_kaggle_imagenet(root, jpeg, wnids=WNIDS, per_class=2, val=(("00000002", "n03"), ("00000001", "n01"))):
    """ImageNet as the Kaggle 'imagenet-object-localization-challenge' archive unpacks.

    Mirrors that archive's tree: LOC_synset_mapping.txt ('<wnid> <names>' per line, sorted
    wnids), LOC_val_solution.csv (ImageId,PredictionString = 'wnid x0 y0 x1 y1 ...' per box),
    LOC_train_solution.csv, ILSVRC/Data/CLS-LOC/train/<wnid>/<wnid>_<n>.JPEG and a flat
    ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_<8 digits>.JPEG.
    """
    data = root / "ILSVRC" / "Data" / "CLS-LOC"
    (root / "LOC_synset_mapping.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} name of {w}, other name\n" for w in wnids))
    train_rows = []
    for c, w in enumerate(wnids):
        for j in range(per_class):
            jpeg(data / "train" / w / f"{w}_{j}.JPEG", value=40 * c + 20)
            train_rows.append((f"{w}_{j}", f"{w} 1 2 10 12"))
    with open(root / "LOC_train_solution.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("ImageId", "PredictionString"), *train_rows])
    rows = []
    for num, w in val:
        jpeg(data / "val" / f"ILSVRC2012_val_{num}.JPEG", value=40 * wnids.index(w) + 20)
        rows.append((f"ILSVRC2012_val_{num}", f"{w} 3 4 15 16 {w} 1 1 5 5"))
    with open(root / "LOC_val_solution.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("ImageId", "PredictionString"), *rows])
    return root


def test_kaggle_imagenet_layout(tmp_path, jpeg):
    root = write_kaggle_imagenet(tmp_path / "imagenet", jpeg)
    test = image_split("imagenet", root, "test", 3, image_size=S)
    assert [(p.name, lbl) for p, lbl in test.samples] == [("ILSVRC2012_val_00000001.JPEG", 0),
                                                         ("ILSVRC2012_val_00000002.JPEG", 2)]
    assert abs(test[1]["video"].float().mean().item() - 100) < 3
    train = image_split("imagenet", root, "train", 3, image_size=S, val_fraction=0.2)
    val = image_split("imagenet", root, "val", 3, image_size=S, val_fraction=0.2)
    assert len(train) + len(val) == 6 and len(val) == 2
    assert all("ILSVRC/Data/CLS-LOC/train" in str(p) for p, _ in train.samples + val.samples)


@pytest.mark.parametrize("train_dir,val_dir", [("data_256_standard", "val_256"),    # torchvision small
                                               ("data_large_standard", "val_large"),  # torchvision large
                                               ("data_large", "val_large")])          # official large tars
def test_places365_torchvision_and_large_layouts(tmp_path, jpeg, train_dir, val_dir):
    # torchvision.datasets.Places365 (images_dir): data_{256,large}_standard for train,
    # {val}_{256,large} for val; the file lists at the root ('/a/airfield/00000001.jpg 0').
    jpeg(tmp_path / train_dir / "a/airfield/00000001.jpg", value=20)
    jpeg(tmp_path / train_dir / "b/bar/00000001.jpg", value=60)
    (tmp_path / "places365_train_standard.txt").write_text("/a/airfield/00000001.jpg 0\n/b/bar/00000001.jpg 1\n")
    jpeg(tmp_path / val_dir / "Places365_val_00000001.jpg", value=60)
    (tmp_path / "places365_val.txt").write_text("Places365_val_00000001.jpg 1\n")
    (tmp_path / "categories_places365.txt").write_text("/a/airfield 0\n/b/bar 1\n")
    test = image_split("places365", tmp_path, "test", 2, image_size=S)
    assert test.samples == [(tmp_path / val_dir / "Places365_val_00000001.jpg", 1)]
    train = image_split("places365", tmp_path, "train", 2, image_size=S)
    assert all(str(p).startswith(str(tmp_path / train_dir)) for p, _ in train.samples)


def test_unknown_layout_names_what_was_found(tmp_path, jpeg):
    jpeg(tmp_path / "images" / "x.jpg")
    (tmp_path / "places365_val.txt").write_text("Places365_val_00000001.jpg 1\n")
    with pytest.raises(DatasetFormatError, match=r"(?s)places365_val.txt is there but not its images; "
                                                 r"expected one of val_256/, val_large/ \(found: images/"):
        image_split("places365", tmp_path, "test", 2, image_size=S)
    with pytest.raises(DatasetFormatError, match=r"(?s)imagenet: no known layout .*found: images/.*"
                                                 r"Expected .*ILSVRC/Data/CLS-LOC"):
        image_split("imagenet", tmp_path, "test", 2, image_size=S)
