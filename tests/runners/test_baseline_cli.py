"""`walt-probe baseline` through the real CLI on tiny synthetic tasks (5-frame 32 x 32 clips)."""

import json
import math

import numpy as np
import pytest

from runners import cli
from tasks.synthetic import builders

TASKS = {  # gin file -> (configurable, task name, metric)
    "objects_imagenet": ("SyntheticObjects", "synthetic_objects", "top1"),
    "depth_scannet": ("SyntheticDepth", "synthetic_depth", "abs_rel"),
    "pose_realestate10k": ("SyntheticCameraPose", "synthetic_pose", "pose_error"),
    "point_tracks_movi_e": ("SyntheticPointTracks", "synthetic_point_tracks", "average_jaccard"),
    "box_tracks_waymo": ("SyntheticBoxTracks", "synthetic_box_tracks", "mean_iou"),
}
SIZES = {"num_train": 8, "num_val": 4, "image_size": 32, "num_frames": 5}


def _argv(gin_file: str, out) -> list[str]:
    name = TASKS[gin_file][0]
    return ["baseline", f"--gin_file=tasks/synthetic/{gin_file}.gin", "--out", str(out),
            *[f"--gin.{name}.{k}={v}" for k, v in SIZES.items()]]


@pytest.mark.parametrize("gin_file", sorted(TASKS))
def test_writes_one_json_per_task(gin_file, synthetic_cache, tmp_path, capsys):
    assert cli.main(_argv(gin_file, tmp_path)) == 0
    _, task_name, metric = TASKS[gin_file]
    result = json.loads((tmp_path / f"{task_name}.json").read_text())
    assert {"task", "metric", "higher_is_better", "value", "metrics", "predictor", "num_train",
            "num_val"} <= set(result)
    assert (result["task"], result["metric"]) == (task_name, metric)
    assert (result["num_train"], result["num_val"]) == (8, 4)
    assert result["value"] == result["metrics"][metric] and math.isfinite(result["value"])
    assert result["higher_is_better"] == (metric in ("top1", "average_jaccard", "mean_iou"))
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically, no leftovers
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"baseline {task_name}: {metric} = ") and str(tmp_path) in line


def test_majority_class_matches_the_rendered_labels(synthetic_cache, tmp_path):
    assert cli.main(_argv("objects_imagenet", tmp_path)) == 0
    result = json.loads((tmp_path / "synthetic_objects.json").read_text())
    data = builders.analog_datasets("objects", **SIZES)
    train = np.array([int(data["train"][i]["label"]) for i in range(len(data["train"]))])
    val = np.array([int(data["val"][i]["label"]) for i in range(len(data["val"]))])
    majority = int(np.bincount(train).argmax())
    assert result["fit"]["class"] == majority
    assert result["fit"]["train_frequency"] == pytest.approx(np.mean(train == majority))
    assert result["value"] == pytest.approx(np.mean(val == majority))


def test_no_task_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["baseline", "--gin_file=backbones/tiny.gin", "--out", str(tmp_path)]) == 2
    assert "no task" in capsys.readouterr().err and not list(tmp_path.iterdir())
