"""The real-dataset Tasks: gin files parse and bind TASK; builders give Tasks over both splits."""

from pathlib import Path

import gin
import pytest
import torch

import runners.configurables  # noqa: F401  registers ImageNet, ..., WaymoBoxes
from tasks.real import builders
from tasks.real.common import DatasetFormatError

GIN_DIR = Path(__file__).resolve().parents[3] / "gin" / "tasks" / "real"
GIN_FILES = sorted(GIN_DIR.glob("*.gin"))


def test_one_gin_file_per_dataset():
    assert len(GIN_FILES) == 10


@pytest.mark.parametrize("path", GIN_FILES, ids=lambda p: p.stem)
def test_gin_file_parses_and_requires_its_path(path):
    gin.clear_config()
    gin.parse_config_file(str(path))
    text = path.read_text()
    assert "%gin.REQUIRED" in text and text.startswith("# ")
    task_ref = gin.query_parameter("%TASK")
    with pytest.raises(DatasetFormatError, match="no location given"):
        task_ref.scoped_configurable_fn()   # the required macro is unset
    gin.clear_config()


def test_imagenet_task_through_gin(tmp_path, jpeg):
    for split in ("train", "val"):
        for c in ("n01", "n02"):
            jpeg(tmp_path / split / c / "a.JPEG")
    gin.clear_config()
    gin.parse_config_file(str(GIN_DIR / "imagenet.gin"))
    gin.parse_config(f"IMAGENET_DIR = '{tmp_path}'\nImageNet.num_classes = 2\nImageNet.image_size = 16")
    task = gin.query_parameter("%TASK").scoped_configurable_fn()
    gin.clear_config()
    assert task.name == "imagenet" and task.image_task and set(task.datasets) == {"train", "val"}
    batch = torch.utils.data.default_collate([task.split("val")[i] for i in range(2)])
    assert batch["video"].shape == (2, 1, 16, 16, 3) and builders.skipped_counts(task) == {"train": 0, "val": 0}


def test_waymo_task_collates(tmp_path, jpeg, write_json):
    for split in ("train", "val"):
        for i in range(6):
            jpeg(tmp_path / split / "seg" / "frames" / f"{i}.jpg", size=(16, 16))
            write_json(tmp_path / split / "seg" / "boxes" / f"{i}.json",
                       {"boxes": [{"id": "a", "box": [1, 1, 9, 9]}]})
    task = builders.waymo_boxes(str(tmp_path), image_size=8, num_frames=3)
    assert task.metric == "mean_iou"
    batch = torch.utils.data.default_collate([task.split("train")[0]] * 2)
    assert batch["boxes"].shape == (2, 25, 3, 4) and batch["box_valid"].sum() == 6
