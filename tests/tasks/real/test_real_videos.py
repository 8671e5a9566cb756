"""Kinetics and SSv2 readers on tiny MP4 / WebM fixtures in the standard layouts."""

import csv

import numpy as np
import pytest
import torch

from tasks.real.common import DatasetFormatError
from tasks.real.videos import video_split

S, T = 16, 5
CLASSES = ["abseiling", "zumba"]


def _kinetics_csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
        w.writerows(rows)


@pytest.fixture
def kinetics(tmp_path, video):
    _kinetics_csv(tmp_path / "annotations/train.csv",
                  [("abseiling", "aaa", 0, 10, "train"), ("zumba", "bbb", 5, 15, "train"),
                   ("zumba", "gone", 0, 10, "train")])  # 'gone' was taken down: not on disk
    _kinetics_csv(tmp_path / "annotations/val.csv", [("zumba", "ccc", 3, 13, "val")])
    video(tmp_path / "train/aaa_000000_000010.mp4", 12)
    video(tmp_path / "train/bbb_000005_000015.mp4", 12)
    video(tmp_path / "val/ccc_000003_000013.mp4", 13)
    return tmp_path


def test_kinetics_csv_layout(kinetics, decode_frame_ids):
    train = video_split("kinetics", kinetics, "train", 2, image_size=S, num_frames=T)
    assert len(train) == 2 and [lbl for _, lbl in train.samples] == [0, 1]
    from torchvision.transforms import v2
    assert any(isinstance(t, v2.RandomHorizontalFlip) for t in train.transform.transforms)
    assert len(train.skipped) == 1 and "gone_000000_000010" in train.skipped[0][0]
    val = video_split("kinetics", kinetics, "val", 2, image_size=S, num_frames=T)
    item = val[0]
    assert item["video"].shape == (T, S, S, 3) and item["video"].dtype == torch.uint8
    assert item["label"].item() == 1
    # Evaluation: the centre window of 13 frames at stride 1 is frames 4..8.
    assert list(decode_frame_ids(item["video"])) == [4, 5, 6, 7, 8]


def test_kinetics_train_window_is_random_and_contiguous(kinetics, decode_frame_ids):
    train = video_split("kinetics", kinetics, "train", 2, image_size=S, num_frames=T)
    starts = set()
    torch.manual_seed(0)
    for _ in range(8):
        ids = decode_frame_ids(train[0]["video"])
        assert list(np.diff(ids)) == [1] * (T - 1)
        starts.add(ids[0])
    assert len(starts) > 1 and max(starts) <= 12 - T


def test_short_video_repeats_last_frame(tmp_path, video, decode_frame_ids):
    video(tmp_path / "val/zumba/x.mp4", 3)
    video(tmp_path / "train/zumba/y.mp4", 3)
    ds = video_split("kinetics", tmp_path, "val", None, image_size=S, num_frames=T)
    assert list(decode_frame_ids(ds[0]["video"])) == [0, 1, 2, 2, 2]


def test_metadata_csv_layout(tmp_path, video):
    for split in ("train", "val"):
        video(tmp_path / split / "clip0.mp4", 6)
        (tmp_path / split / "metadata.csv").write_text("file_name,label\nclip0.mp4,zumba\n")
    (tmp_path / "classes.txt").write_text("abseiling\nzumba\n")
    ds = video_split("kinetics", tmp_path, "val", 2, image_size=S, num_frames=T)
    assert ds[0]["label"].item() == 1 and ds.num_classes == 2


def test_label_outside_class_list(kinetics):
    _kinetics_csv(kinetics / "annotations/val.csv", [("juggling fire", "ccc", 3, 13, "val")])
    with pytest.raises(DatasetFormatError, match=r"val.csv:2: label 'juggling fire' is not in"):
        video_split("kinetics", kinetics, "val", 2, image_size=S, num_frames=T)


def test_class_count_and_missing_split(kinetics):
    with pytest.raises(DatasetFormatError, match="2 classes, expected 400"):
        video_split("kinetics", kinetics, "train", 400, image_size=S)
    with pytest.raises(DatasetFormatError, match="split 'test' not found"):
        video_split("kinetics", kinetics, "test", 2, image_size=S)


def test_truncated_video_names_file(kinetics):
    path = kinetics / "val/ccc_000003_000013.mp4"
    path.write_bytes(path.read_bytes()[:200])
    ds = video_split("kinetics", kinetics, "val", 2, image_size=S, num_frames=T)
    with pytest.raises(DatasetFormatError, match=r"ccc_000003_000013.mp4"):
        ds[0]


@pytest.fixture
def ssv2(tmp_path, video, write_json):
    write_json(tmp_path / "something-something-v2-labels.json",
               {"Holding something": "0", "Pushing something from left to right": "1"})
    write_json(tmp_path / "something-something-v2-train.json",
               [{"id": "11", "label": "holding a cup", "template": "Holding [something]",
                 "placeholders": ["a cup"]}])
    write_json(tmp_path / "something-something-v2-validation.json",
               [{"id": "22", "label": "pushing a pen from left to right",
                 "template": "Pushing [something] from left to right", "placeholders": ["a pen"]},
                {"id": "33", "label": "holding x", "template": "Holding [something]"}])
    video(tmp_path / "20bn-something-something-v2/11.webm", 20)
    video(tmp_path / "20bn-something-something-v2/22.webm", 21)
    return tmp_path


def test_ssv2_stride_two_and_labels(ssv2, decode_frame_ids):
    val = video_split("ssv2", ssv2, "val", 2, image_size=S, num_frames=T)
    assert len(val) == 1 and len(val.skipped) == 1  # video 33 is not on disk
    item = val[0]
    assert item["label"].item() == 1 and item["video"].shape == (T, S, S, 3)
    ids = decode_frame_ids(item["video"])   # webm states no length: decoded whole, then sampled
    assert list(np.diff(ids)) == [2] * (T - 1) and ids[0] == (21 - 9) // 2
    # SSv2 classes name directions, so training never flips; Kinetics training does.
    from torchvision.transforms import v2
    train = video_split("ssv2", ssv2, "train", 2, image_size=S, num_frames=T)
    assert not any(isinstance(t, v2.RandomHorizontalFlip) for t in train.transform.transforms)


def test_ssv2_unknown_template(ssv2, write_json):
    write_json(ssv2 / "something-something-v2-train.json",
               [{"id": "11", "template": "Juggling [something]"}])
    with pytest.raises(DatasetFormatError, match="Juggling something"):
        video_split("ssv2", ssv2, "train", 2, image_size=S)
