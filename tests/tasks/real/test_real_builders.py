"""The real-dataset Tasks: gin files parse, bind TASK and Table 7's readout recipe; builders give
Tasks over train / val / test."""

from pathlib import Path

import gin
import pytest
import torch

import runners.configurables  # noqa: F401  registers ImageNet, ..., WaymoBoxes, Probe, PaperOptimizer
from readouts.optim import paper_optimizer
from tasks.real import builders
from tasks.real.common import DatasetFormatError

GIN_DIR = Path(__file__).resolve().parents[3] / "gin" / "tasks" / "real"
GIN_FILES = sorted(GIN_DIR.glob("*.gin"))


def test_one_gin_file_per_dataset():
    assert len(GIN_FILES) == 10


def _lr_curve(steps: int, recipe: dict, upto: int = 1002) -> list[float]:
    """The learning rates of the first `upto` steps of PaperOptimizer with `recipe`."""
    kw = {k: recipe[k] for k in ("lr", "warmup", "final_lr", "weight_decay", "eps")}
    optimizer, scheduler = paper_optimizer([torch.nn.Parameter(torch.zeros(1))], steps, **kw)
    lrs = []
    for _ in range(upto):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


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


# Paper Table 7 (App. E): batch size and steps per dataset; every task: AdamW, peak lr 3e-4 after
# a 1,000-step linear warm-up from 0, cosine decay to 1e-7, weight decay 1e-4, eps 1e-8.
TABLE7 = {"imagenet": (64, 200_182), "places365": (512, 10_000), "inat2018": (512, 10_000),
          **{name: (32, 40_000) for name in ("kinetics400", "kinetics700", "ssv2", "scannet_depth",
                                             "realestate10k", "point_tracking", "waymo_boxes")}}


@pytest.mark.parametrize("path", GIN_FILES, ids=lambda p: p.stem)
def test_gin_file_sets_table7_recipe(path):
    gin.clear_config()
    gin.parse_config_file(str(path))
    batch, steps = TABLE7[path.stem]
    probe = gin.get_configurable("Probe")()
    assert (probe.batch_size, probe.steps) == (batch, steps)
    gin.parse_config("STEPS = 7")                                    # a CLI override still works
    assert gin.get_configurable("Probe")().steps == 7
    got = {k: gin.query_parameter(f"PaperOptimizer.{k}") for k in ("lr", "warmup", "final_lr",
                                                                   "weight_decay", "eps")}
    assert got == {"lr": 3e-4, "warmup": 1000, "final_lr": 1e-7, "weight_decay": 1e-4, "eps": 1e-8}
    # The warm-up is taken as given (no cap): the optimiser runs Table 7's 1,000 steps.
    lrs = _lr_curve(steps, got)
    assert lrs[999] < lrs[1000] == pytest.approx(3e-4)
    gin.clear_config()


def test_imagenet_task_through_gin(tmp_path, jpeg):
    for split in ("train", "val"):
        for c in ("n01", "n02"):
            jpeg(tmp_path / split / c / "a.JPEG")
            jpeg(tmp_path / split / c / "b.JPEG")
    gin.clear_config()
    gin.parse_config_file(str(GIN_DIR / "imagenet.gin"))
    gin.parse_config(f"IMAGENET_DIR = '{tmp_path}'\nImageNet.num_classes = 2\nImageNet.image_size = 16")
    task = gin.query_parameter("%TASK").scoped_configurable_fn()
    gin.clear_config()
    assert task.name == "imagenet" and task.image_task and set(task.datasets) == {"train", "val", "test"}
    assert len(task.split("test")) == 4 and len(task.split("train")) + len(task.split("val")) == 4
    batch = torch.utils.data.default_collate([task.split("test")[i] for i in range(2)])
    assert batch["video"].shape == (2, 1, 16, 16, 3)
    assert builders.skipped_counts(task) == {"train": 0, "val": 0, "test": 0}


def test_waymo_task_collates(tmp_path, jpeg, write_json):
    for split, segs in (("train", ("s1", "s2")), ("val", ("s3",))):
        for seg in segs:
            for i in range(6):
                jpeg(tmp_path / split / seg / "frames" / f"{i}.jpg", size=(16, 16))
                write_json(tmp_path / split / seg / "boxes" / f"{i}.json",
                           {"boxes": [{"id": "a", "box": [1, 1, 9, 9]}]})
    task = builders.waymo_boxes(str(tmp_path), image_size=8, num_frames=3)
    assert task.metric == "mean_iou"
    assert [len(task.split(s)) for s in ("train", "val", "test")] == [1, 1, 1]
    batch = torch.utils.data.default_collate([task.split("train")[0]] * 2)
    assert batch["boxes"].shape == (2, 25, 3, 4) and batch["box_valid"].sum() == 6


def test_point_tracking_task_splits(tmp_path):
    """Train / val are Kubric (disjoint videos), test is TAP-Vid."""
    import pickle
    import numpy as np
    rng = np.random.default_rng(0)
    for n in range(4):
        np.savez(tmp_path / f"{n:04d}.npz", video=rng.integers(0, 255, (6, 16, 16, 3), dtype=np.uint8),
                 target_points=rng.uniform(2, 14, (5, 6, 2)).astype(np.float32),
                 occluded=np.zeros((5, 6), bool))
    entry = {"video": np.zeros((8, 16, 16, 3), np.uint8), "points": rng.uniform(0.1, 0.9, (3, 8, 2)),
             "occluded": np.zeros((3, 8), bool)}
    with open(tmp_path / "tapvid_davis.pkl", "wb") as fh:
        pickle.dump({"bear": entry}, fh)
    task = builders.point_tracking(str(tmp_path / "tapvid_davis.pkl"), str(tmp_path), image_size=8,
                                   num_frames=3, num_points=4, val_fraction=0.25)
    train, val, test = (task.split(s) for s in ("train", "val", "test"))
    assert len(train) == 3 and len(val) == 1 and not set(train.files) & set(val.files)
    assert torch.equal(val[0]["target_points"], val[0]["target_points"])    # fixed val clips
    assert test[0]["video"].shape == (3, 8, 8, 3)
