"""Waymo 2-D box reader on a tiny converted layout (frames + per-frame box JSON)."""

import numpy as np
import pytest
import torch

from tasks.real.common import DatasetFormatError
from tasks.real.waymo import WaymoBoxes

S, T = 8, 3
H, W = 20, 30          # short side 20 -> 8: scale 0.4, width 12, centre crop drops 2 px left


@pytest.fixture
def waymo(tmp_path, jpeg, write_json):
    for split, n in (("training", 9), ("validation", 7)):
        seg = tmp_path / split / "segment-1"
        for i in range(n):
            ts = 1_000_000 + 100_000 * i            # 10 Hz
            jpeg(seg / "frames" / f"{ts}.jpg", value=10 * i + 10, size=(H, W))
            boxes = [{"id": "car", "box": [5.0 + i, 0.0, 15.0 + i, 10.0]},      # large, moves
                     {"id": "tiny", "box": [10.0, 10.0, 10.5, 10.5]}]           # < 0.5% area
            if i < 4:
                boxes.append({"id": "van", "box": [10.0, 5.0, 20.0, 20.0]})     # leaves at i = 4
            boxes += [{"id": f"ped{k}", "box": [5.0, 5.0, 12.0, 12.0 + k / 10]} for k in range(30)]
            write_json(seg / "boxes" / f"{ts}.json", {"boxes": boxes})
    (tmp_path / "training" / "segment-2" / "frames").mkdir(parents=True)   # empty: skipped
    return tmp_path


def test_eval_item(waymo, decode_frame_ids):
    ds = WaymoBoxes(waymo, "val", image_size=S, num_frames=T, max_boxes=25)
    item = ds[0]
    assert item["video"].shape == (T, S, S, 3) and item["boxes"].shape == (25, T, 4)
    assert item["box_valid"].shape == (25, T) and item["box_valid"].dtype == torch.bool
    ids = decode_frame_ids(item["video"])
    assert list(np.diff(ids)) == [2, 2]                   # 10 Hz -> 5 Hz
    assert torch.equal(ds[0]["boxes"], item["boxes"])     # evaluation window is seeded
    boxes, valid = item["boxes"], item["box_valid"]
    assert ((boxes >= 0) & (boxes <= 1)).all() and (boxes[~valid] == 0).all()
    assert valid[:, 0].all()                              # 25 tracks present in frame 0


def test_boxes_normalised_small_dropped_and_capped(waymo):
    ds = WaymoBoxes(waymo, "train", image_size=S, num_frames=T)
    assert len(ds) == 1 and len(ds.skipped) == 1
    torch.manual_seed(0)
    item = ds[0]
    boxes, valid = item["boxes"], item["box_valid"]
    # Largest first: 'van' (10 x 15 px) if in the window's first frame, then 'car' / peds.
    areas = ((boxes[:, 0, 2] - boxes[:, 0, 0]) * (boxes[:, 0, 3] - boxes[:, 0, 1]))
    assert (areas[:-1] >= areas[1:] - 1e-6).all() and (areas >= 0.005).all()
    # 'car' [5 + i, 0, 15 + i, 10] px -> x * 0.4 - 2, y * 0.4, over 8.
    start = round(float(item["video"][0].float().mean()) - 10) // 10
    car = ((np.array([5.0 + start, 0, 15.0 + start, 10]) * 0.4) - [2, 0, 2, 0]) / 8
    assert any(np.allclose(boxes[n, 0].numpy(), car, atol=1e-6) for n in range(25))


def test_track_absent_later_is_invalid(waymo, jpeg):
    ds = WaymoBoxes(waymo, "train", image_size=S, num_frames=T, max_boxes=40)
    torch.manual_seed(3)
    found = False
    for _ in range(10):
        item = ds[0]
        boxes, valid = item["boxes"], item["box_valid"]
        van = [n for n in range(40) if valid[n, 0] and np.allclose(
            boxes[n, 0].numpy(), np.clip(([10, 5, 20, 20] * np.array([.4] * 4) - [2, 0, 2, 0]) / 8, 0, 1))]
        if van and not valid[van[0]].all():
            found = True
    assert found


def test_bad_inputs(waymo, tmp_path):
    with pytest.raises(DatasetFormatError, match="split 'test' not found"):
        WaymoBoxes(waymo, "test")
    seg = waymo / "validation" / "segment-1" / "boxes"
    (seg / "1000000.json").write_text("{not json")
    for f in sorted(seg.glob("*.json"))[1:]:
        f.unlink()
    with pytest.raises(DatasetFormatError, match=r"(1000000.json: not a box file|box file: file not found)"):
        WaymoBoxes(waymo, "val", image_size=S, num_frames=T)[0]
