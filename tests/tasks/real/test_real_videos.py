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
    val = video_split("kinetics", kinetics, "val", 2, image_size=S, num_frames=T)
    # 'train' and 'val' split the official training clips (aaa, bbb) one each, disjointly.
    assert sorted(lbl for _, lbl, _ in train.samples + val.samples) == [0, 1]
    assert len(train) == len(val) == 1 and train.samples[0][0] != val.samples[0][0]
    from torchvision.transforms import v2
    assert any(isinstance(t, v2.RandomHorizontalFlip) for t in train.transform.transforms)
    assert not any(isinstance(t, v2.RandomHorizontalFlip) for t in val.transform.transforms)
    assert len(train.skipped) == 1 and "gone_000000_000010" in train.skipped[0][0]
    test = video_split("kinetics", kinetics, "test", 2, image_size=S, num_frames=T)
    item = test[0]
    assert item["video"].shape == (T, S, S, 3) and item["video"].dtype == torch.uint8
    assert item["label"].item() == 1
    # Evaluation: the centre window of 13 frames at stride 1 is frames 4..8.
    assert list(decode_frame_ids(item["video"])) == [4, 5, 6, 7, 8]


def test_kinetics_train_window_is_random_and_contiguous(kinetics, decode_frame_ids):
    train = video_split("kinetics", kinetics, "train", 2, image_size=S, num_frames=T)
    assert len(train) == 1
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
    ds = video_split("kinetics", tmp_path, "test", None, image_size=S, num_frames=T)
    assert list(decode_frame_ids(ds[0]["video"])) == [0, 1, 2, 2, 2]


def test_metadata_csv_layout(tmp_path, video):
    for split in ("train", "val"):
        video(tmp_path / split / "clip0.mp4", 6)
        (tmp_path / split / "metadata.csv").write_text("file_name,label\nclip0.mp4,zumba\n")
    (tmp_path / "classes.txt").write_text("abseiling\nzumba\n")
    ds = video_split("kinetics", tmp_path, "test", 2, image_size=S, num_frames=T)
    assert ds[0]["label"].item() == 1 and ds.num_classes == 2


def test_label_outside_class_list(kinetics):
    _kinetics_csv(kinetics / "annotations/val.csv", [("juggling fire", "ccc", 3, 13, "val")])
    with pytest.raises(DatasetFormatError, match=r"val.csv:2: label 'juggling fire' is not in"):
        video_split("kinetics", kinetics, "test", 2, image_size=S, num_frames=T)


def test_class_count_and_missing_split(kinetics):
    with pytest.raises(DatasetFormatError, match="2 classes, expected 400"):
        video_split("kinetics", kinetics, "train", 400, image_size=S)
    import shutil
    shutil.rmtree(kinetics / "val")
    with pytest.raises(DatasetFormatError, match="lists the 'val' clips but the folder"):
        video_split("kinetics", kinetics, "test", 2, image_size=S)
    with pytest.raises(DatasetFormatError, match="split 'validation' not found"):
        video_split("kinetics", kinetics, "validation", 2, image_size=S)


def test_truncated_video_names_file(kinetics):
    path = kinetics / "val/ccc_000003_000013.mp4"
    path.write_bytes(path.read_bytes()[:200])
    ds = video_split("kinetics", kinetics, "test", 2, image_size=S, num_frames=T)
    with pytest.raises(DatasetFormatError, match=r"ccc_000003_000013.mp4"):
        ds[0]


@pytest.fixture
def ssv2(tmp_path, video, write_json):
    write_json(tmp_path / "something-something-v2-labels.json",
               {"Holding something": "0", "Pushing something from left to right": "1"})
    write_json(tmp_path / "something-something-v2-train.json",
               [{"id": "11", "label": "holding a cup", "template": "Holding [something]",
                 "placeholders": ["a cup"]},
                {"id": "12", "label": "pushing a cup from left to right",
                 "template": "Pushing [something] from left to right", "placeholders": ["a cup"]}])
    write_json(tmp_path / "something-something-v2-validation.json",
               [{"id": "22", "label": "pushing a pen from left to right",
                 "template": "Pushing [something] from left to right", "placeholders": ["a pen"]},
                {"id": "33", "label": "holding x", "template": "Holding [something]"}])
    video(tmp_path / "20bn-something-something-v2/11.webm", 20)
    video(tmp_path / "20bn-something-something-v2/12.webm", 20)
    video(tmp_path / "20bn-something-something-v2/22.webm", 21)
    return tmp_path


def test_ssv2_stride_two_and_labels(ssv2, decode_frame_ids):
    val = video_split("ssv2", ssv2, "test", 2, image_size=S, num_frames=T)
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


def test_ssv2_current_package_labels_folder(ssv2):
    """The current SSv2 package: labels/labels.json, labels/train.json, labels/validation.json."""
    (ssv2 / "labels").mkdir()
    for name in ("labels", "train", "validation"):
        (ssv2 / f"something-something-v2-{name}.json").rename(ssv2 / "labels" / f"{name}.json")
    ds = video_split("ssv2", ssv2, "test", 2, image_size=S, num_frames=T)
    assert len(ds) == 1 and ds[0]["label"].item() == 1
    (ssv2 / "labels" / "labels.json").rename(ssv2 / "labels" / "classes.json")
    with pytest.raises(DatasetFormatError, match=r"(?s)SSv2 label map.*labels/labels.json.*found in .*labels/"):
        video_split("ssv2", ssv2, "test", 2, image_size=S)


# ----------------------------------------------------------------------------- untrimmed Kinetics

FPS = 10


def _untrimmed(path, seconds):
    """An untrimmed download at 10 fps whose frame t is a flat grey of value 4 t + 10."""
    from tasks.real.video_io import write_video
    path.parent.mkdir(parents=True, exist_ok=True)
    n = seconds * FPS
    write_video(path, np.stack([np.full((24, 32, 3), 4 * t + 10, np.uint8) for t in range(n)]), fps=FPS)
    return path


def _frame_times(clip):
    """Seconds of the source frames a clip of _untrimmed frames holds."""
    ids = np.round((np.asarray(clip, np.float64).mean(axis=(1, 2, 3)) - 10) / 4).astype(int)
    return ids / FPS


@pytest.fixture
def untrimmed(tmp_path):
    # Full YouTube videos named <youtube_id>.mp4 (no _start_end suffix), 6 s long; the labelled
    # 2-second segments are [2, 4) and [3, 5) (Kinetics segments are 10 s; scaled down).
    _kinetics_csv(tmp_path / "annotations/train.csv",
                  [("abseiling", "uuu", 2, 4, "train"), ("zumba", "vvv", 3, 5, "train")])
    _kinetics_csv(tmp_path / "annotations/val.csv", [("zumba", "www", 2, 4, "val")])
    for split, name in (("train", "uuu"), ("train", "vvv"), ("val", "www")):
        _untrimmed(tmp_path / split / f"{name}.mp4", seconds=6)
    return tmp_path


def test_untrimmed_kinetics_never_sampled_outside_its_segment(untrimmed):
    """Must hold (issue 23): an untrimmed file is read only inside [time_start, time_end)."""
    train = video_split("kinetics", untrimmed, "train", 2, image_size=S, num_frames=T)
    (path, _, segment), = train.samples
    assert path.stem in ("uuu", "vvv") and segment == ((2.0, 4.0) if path.stem == "uuu" else (3.0, 5.0))
    torch.manual_seed(0)
    starts = set()
    for _ in range(12):                                     # random training windows
        times = _frame_times(train[0]["video"])
        assert (times >= segment[0]).all() and (times < segment[1]).all(), times
        assert np.allclose(np.diff(times), 1 / FPS)
        starts.add(times[0])
    assert len(starts) > 1
    test = video_split("kinetics", untrimmed, "test", 2, image_size=S, num_frames=T)
    times = _frame_times(test[0]["video"])                  # the centre window of [2, 4)
    np.testing.assert_allclose(times, 2.0 + (20 - T) // 2 / FPS + np.arange(T) / FPS)


def test_untrimmed_segment_outside_the_file_is_refused(untrimmed):
    # The 6 s file cannot hold the segment [8, 10): refused, never read from elsewhere.
    _kinetics_csv(untrimmed / "annotations/val.csv", [("zumba", "www", 8, 10, "val")])
    ds = video_split("kinetics", untrimmed, "test", 2, image_size=S, num_frames=T)
    with pytest.raises(DatasetFormatError, match=r"www.mp4: no frame inside the labelled segment \[8, 10\) s"):
        ds[0]


def test_youtube_id_file_as_long_as_its_segment_is_the_trimmed_clip(untrimmed, decode_frame_ids):
    # A mirror that names trimmed clips <youtube_id>.mp4: 2 s long for a [2, 4) segment.
    _untrimmed(untrimmed / "val" / "www.mp4", seconds=2)
    ds = video_split("kinetics", untrimmed, "test", 2, image_size=S, num_frames=T)
    times = _frame_times(ds[0]["video"])
    np.testing.assert_allclose(times, (20 - T) // 2 / FPS + np.arange(T) / FPS)
