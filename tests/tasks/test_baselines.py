"""Trivial predictors scored by each kind's own accumulator: closed forms on tiny in-memory items."""

import math

import pytest
import torch

from tasks import baselines, kinds


def _items(**columns):
    """A list of item dicts from per-example columns (equal lengths)."""
    size = len(next(iter(columns.values())))
    return [{"index": torch.tensor(i), **{k: torch.as_tensor(v[i]) for k, v in columns.items()}}
            for i in range(size)]


def _classification(train, val):
    data = {"train": _items(label=train), "val": _items(label=val)}
    return kinds.classification("cls", data, num_classes=4, image_task=True)


@pytest.mark.parametrize("train, val, majority, freq, top1", [
    ([0, 1, 1, 1, 2], [1, 1, 0, 2], 1, 0.6, 0.5),
    ([2, 2, 0, 0, 3], [0, 0, 0, 2], 0, 0.4, 0.75),   # tie 0 vs 2 -> the lowest index, as argmax
    ([3, 3], [1, 2], 3, 1.0, 0.0),
])
def test_majority_class_scores_its_val_frequency(train, val, majority, freq, top1):
    out = baselines.trivial_metrics(_classification(train, val), batch_size=2)
    assert out["fit"] == {"class": majority, "train_frequency": pytest.approx(freq)}
    assert out["value"] == pytest.approx(top1) and out["metrics"]["top1"] == out["value"]
    assert out["metric"] == "top1" and out["higher_is_better"] and f"class {majority}" in out["predictor"]
    assert (out["num_train"], out["num_val"]) == (len(train), len(val))


def _depth_task(train_depths, val_depths, frames=2, size=(3, 4)):
    """Each clip: a constant depth map per clip (all frames alike)."""
    full = lambda values: [torch.full((frames, *size), float(v)) for v in values]  # noqa: E731
    data = {"train": _items(depth=full(train_depths)), "val": _items(depth=full(val_depths))}
    return kinds.depth("d", data, image_size=size, num_frames=frames)


def test_constant_depth_gives_abs_rel_zero():
    out = baselines.trivial_metrics(_depth_task([2.5, 2.5, 2.5], [2.5]))
    assert out["value"] == 0.0 and out["alternatives"]["mean_map"]["value"] == 0.0
    assert not out["higher_is_better"] and out["kind"] == "depth"


def test_depth_median_is_the_abs_rel_optimal_constant():
    # Train depths 1 and 3 at every pixel: weights 1 and 1/3, so the weighted median is 1; the
    # mean is 2. On val depth 2: AbsRel(median) = |1 - 2| / 2 = 0.5, AbsRel(mean) = 0.
    out = baselines.trivial_metrics(_depth_task([1.0, 3.0], [2.0]))
    assert out["value"] == pytest.approx(0.5)
    assert out["alternatives"]["mean_map"]["value"] == pytest.approx(0.0)
    # On train itself the median beats the mean: (0 + 2/3) / 2 < (1 + 1/3) / 2.
    train_only = _depth_task([1.0, 3.0], [1.0, 3.0])
    fit = baselines.trivial_metrics(train_only)
    assert fit["value"] == pytest.approx(1 / 3)
    assert fit["alternatives"]["mean_map"]["value"] == pytest.approx(2 / 3)


def test_depth_fit_ignores_missing_pixels_and_subsamples_maps():
    train = [torch.full((2, 3, 4), 2.0), torch.zeros(2, 3, 4)]   # the second clip has no measurement
    train[0][:, 0, 0] = 0.0                                      # pixel (0, 0) never measured
    data = {"train": _items(depth=train), "val": _items(depth=[torch.full((2, 3, 4), 4.0)])}
    task = kinds.depth("d", data, image_size=(3, 4), num_frames=2)
    maps = baselines.fit_depth_maps(task, max_maps=1)
    assert torch.equal(maps["median"], torch.full((3, 4), 2.0)) and torch.equal(maps["mean"], maps["median"])
    assert baselines.trivial_metrics(task)["value"] == pytest.approx(0.5)


def test_weighted_median_matches_the_brute_force_minimiser():
    gen = torch.Generator().manual_seed(0)
    values, weights = torch.rand(7, 5, generator=gen) * 4 + 0.5, torch.rand(7, 5, generator=gen)
    median = baselines.weighted_median(values, weights)
    for p in range(5):
        cost = lambda v: float((weights[:, p] * (values[:, p] - v).abs()).sum())  # noqa: E731
        assert cost(median[p]) <= min(cost(v) for v in values[:, p]) + 1e-6


def _pose(rotation_deg=0.0, t=(0.0, 0.0, 0.0)):
    a = math.radians(rotation_deg)
    rot = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    return torch.cat([rot, torch.tensor(t)[:, None]], dim=1)


def test_mean_pose_and_identity_alternative():
    # Train translations (0, 0, 0) and (2, 0, 0) under one rotation R: the mean is (1, 0, 0) with R.
    data = {"train": _items(pose=[_pose(10), _pose(10, (2.0, 0, 0))]),
            "val": _items(pose=[_pose(10, (1.0, 0, 0))])}
    out = baselines.trivial_metrics(kinds.camera_pose("p", data))
    assert out["value"] == pytest.approx(0.0, abs=1e-5)
    assert torch.allclose(torch.tensor(out["fit"]["pose"]), _pose(10, (1.0, 0, 0)), atol=1e-5)
    # A pure 1 m translation against the identity: every cube corner moves by exactly 1 m.
    data["val"] = _items(pose=[_pose(0, (1.0, 0, 0))])
    out = baselines.trivial_metrics(kinds.camera_pose("p", data))
    assert out["alternatives"]["identity"]["value"] == pytest.approx(1.0, abs=1e-6)


def _point_task(target_xy, occluded, query_yx=(10.0, 50.0), size=(32, 64)):
    """One clip, one point queried at frame 0; target_xy (T, 2) [x, y] pixels."""
    frames = len(target_xy)
    item = {"video": torch.zeros(frames, *size, 3, dtype=torch.uint8),
            "query_points": torch.tensor([[0.0, *query_yx]]),
            "target_points": torch.tensor([target_xy], dtype=torch.float32),
            "occluded": torch.tensor([occluded])}
    data = {"train": [dict(item, index=torch.tensor(0))], "val": [dict(item, index=torch.tensor(0))]}
    return kinds.point_tracks("pt", data, image_size=size, num_frames=frames)


@pytest.mark.parametrize("target, occluded, aj", [
    ([[50, 10]] * 3, [False] * 3, 1.0),                       # still and visible: perfect
    ([[50, 10]] * 3, [False, False, True], 0.5),              # hidden at frame 2: one false positive
    ([[50, 10], [60, 10], [60, 10]], [False] * 3, 0.0),       # moved 10 px = 80 raster px: missed
])
def test_zero_motion_points(target, occluded, aj):
    # Query (y=10, x=50) on a 32 x 64 frame: x beyond the height checks the [x, y] convention.
    out = baselines.trivial_metrics(_point_task(target, occluded))
    assert out["value"] == pytest.approx(aj) and out["metric"] == "average_jaccard"


def _box(x0, y0=0.1, w=0.2, h=0.2):
    return [x0, y0, x0 + w, y0 + h]


@pytest.mark.parametrize("shift, iou", [(0.0, 1.0), (0.1, 1 / 3)])
def test_first_box_everywhere(shift, iou):
    # Track 0 slides by `shift` (half its width: IoU 1/3) after frame 0; track 1 is padding.
    boxes = torch.tensor([[_box(0.2), _box(0.2 + shift), _box(0.2 + shift)], [[0.0] * 4] * 3])
    valid = torch.tensor([[True] * 3, [False] * 3])
    data = {"train": _items(boxes=[boxes], box_valid=[valid]), "val": _items(boxes=[boxes], box_valid=[valid])}
    out = baselines.trivial_metrics(kinds.box_tracks("bx", data, num_frames=3))
    assert out["value"] == pytest.approx(iou, abs=1e-6) and out["metrics"]["num_boxes"] == 2


def test_unknown_metric_is_a_clear_error():
    task = _classification([0], [0])
    task.metric = "f1"
    with pytest.raises(ValueError, match="no trivial predictor"):
        baselines.trivial_metrics(task)
