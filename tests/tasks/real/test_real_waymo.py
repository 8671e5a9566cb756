"""Waymo 2-D box reader: the v2 release's Parquet components (pyarrow), and the converted layout."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from tasks.real import builders
from tasks.real.common import DatasetFormatError
from tasks.real.waymo import WaymoBoxes

S, T = 8, 3
H, W = 20, 30          # short side 20 -> 8: scale 0.4, width 12, centre crop drops 2 px left


# ----------------------------------------------------------------------------- v2 release

def _jpeg_bytes(value, hw=(H, W)):
    buf = io.BytesIO()
    Image.fromarray(np.full((*hw, 3), value, np.uint8)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write_v2_segment(split_dir, segment, frames, boxes):
    """One segment's camera_image and camera_box files, in the v2 release's column layout.

    Mirrors waymo-open-dataset src/waymo_open_dataset/v2/perception/camera_image.py
    (CameraImageComponent), box.py (CameraBoxComponent) and base.py (CameraKey,
    CameraLabelKey), flattened by v2/component.py: key columns 'key.<field>', component columns
    '[Component].<path>' with Arrow types from column_types.py (BoxAxisAligned2d = center / size
    Vec2d, float64 pixels). One file per segment: <split>/<component>/<segment>.parquet.
    frames: [(timestamp_us, camera_name, jpeg bytes)]; boxes: [(timestamp_us, camera_name,
    camera_object_id, (cx, cy, sx, sy))]. Rows are written in the given order (not sorted).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    def keys(rows):
        return {"key.segment_context_name": pa.array([segment] * len(rows), pa.string()),
                "key.frame_timestamp_micros": pa.array([r[0] for r in rows], pa.int64()),
                "key.camera_name": pa.array([r[1] for r in rows], pa.int8())}

    n = len(frames)
    image = dict(keys(frames), **{
        "[CameraImageComponent].image": pa.array([f[2] for f in frames], pa.binary()),
        "[CameraImageComponent].pose.transform": pa.array([list(np.eye(4).ravel())] * n,
                                                          pa.list_(pa.float64(), 16)),
        **{f"[CameraImageComponent].velocity.linear_velocity.{a}": pa.array([0.0] * n, pa.float32())
           for a in "xyz"},
        **{f"[CameraImageComponent].velocity.angular_velocity.{a}": pa.array([0.0] * n, pa.float64())
           for a in "xyz"},
        "[CameraImageComponent].pose_timestamp": pa.array([f[0] / 1e6 for f in frames], pa.float64()),
        **{f"[CameraImageComponent].rolling_shutter_params.{a}": pa.array([0.0] * n, pa.float64())
           for a in ("shutter", "camera_trigger_time", "camera_readout_done_time")},
    })
    m = len(boxes)
    box = dict(keys(boxes), **{
        "key.camera_object_id": pa.array([b[2] for b in boxes], pa.string()),
        **{f"[CameraBoxComponent].box.{part}.{a}": pa.array([b[3][i] for b in boxes], pa.float64())
           for i, (part, a) in enumerate([("center", "x"), ("center", "y"), ("size", "x"), ("size", "y")])},
        "[CameraBoxComponent].type": pa.array([1] * m, pa.int8()),
        "[CameraBoxComponent].difficulty_level.detection": pa.array([1] * m, pa.int8()),
        "[CameraBoxComponent].difficulty_level.tracking": pa.array([1] * m, pa.int8()),
    })
    for component, columns in (("camera_image", image), ("camera_box", box)):
        (split_dir / component).mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), split_dir / component / f"{segment}.parquet")


def _car(i):
    """(cx, cy, sx, sy) of the car at 10 Hz frame i: 10 x 8 px, moving right by 1 px a frame."""
    return (11.0 + i, 8.0, 10.0, 8.0)


def _v2_segment_rows(n, seed):
    rng = np.random.default_rng(seed)
    frames, boxes = [], []
    for i in range(n):
        ts = 1_550_000_000_000_000 + 100_000 * i
        frames.append((ts, 1, _jpeg_bytes(10 * i + 10)))
        frames.append((ts, 2, _jpeg_bytes(250)))                          # FRONT_LEFT: ignored
        boxes.append((ts, 1, "car", _car(i)))
        boxes.append((ts, 1, "ped", (15.0, 12.0, 4.0, 6.0)))              # 4 x 6 px, still
        boxes.append((ts, 2, "car", (1.0, 1.0, 900.0, 900.0)))            # other camera, other raster
    order = rng.permutation(len(frames))                                   # files are not sorted
    return [frames[j] for j in order], [boxes[j] for j in rng.permutation(len(boxes))]


@pytest.fixture
def waymo_v2(tmp_path):
    for split, names in (("training", ["seg_a", "seg_b", "seg_c"]), ("validation", ["seg_v"])):
        for k, name in enumerate(names):
            write_v2_segment(tmp_path / split, name, *_v2_segment_rows(9, seed=k))
    return tmp_path


def test_v2_release_read_into_box_task(waymo_v2, decode_frame_ids):
    """Must hold (issue 23): v2 Parquet in the release's columns -> box task, boxes in pixels equal."""
    task = builders.waymo_boxes(str(waymo_v2), image_size=S, num_frames=T)
    assert task.metric == "mean_iou" and set(task.datasets) == {"train", "val", "test"}
    test = task.split("test")
    assert test.layout == "release" and len(test) == 1
    item = test[0]
    assert item["video"].shape == (T, S, S, 3) and item["boxes"].shape == (25, T, 4)
    ids = decode_frame_ids(item["video"])                  # FRONT frames only, 10 Hz -> 5 Hz
    assert list(np.diff(ids)) == [2, 2]
    stamps = test.segments[0].stamps[ids // 2]
    pixel = test.pixel_boxes(0, stamps)
    for t, frame in enumerate(pixel):                      # the file's boxes, in pixels, FRONT only
        cx, cy, sx, sy = _car(ids[t])
        np.testing.assert_array_equal(frame["car"], [cx - sx / 2, cy - sy / 2, cx + sx / 2, cy + sy / 2])
        assert set(frame) == {"car", "ped"}
    # The item's boxes map back to those pixels through the resize (0.4) and crop (2 px left).
    valid = item["box_valid"]
    assert valid[:2].all() and not valid[2:].any()         # car (80 px^2) first, then ped (24 px^2)
    back = item["boxes"][:2].numpy().astype(np.float64) * S
    back = (back + [2, 0, 2, 0]) / 0.4
    for n, name in enumerate(["car", "ped"]):
        np.testing.assert_allclose(back[n], np.stack([f[name] for f in pixel]), atol=1e-4)


def test_v2_splits_are_disjoint_and_deterministic(waymo_v2):
    kw = dict(image_size=S, num_frames=T)
    train, val = WaymoBoxes(waymo_v2, "train", **kw), WaymoBoxes(waymo_v2, "val", **kw)
    names = lambda ds: [s.name for s in ds.segments]   # noqa: E731
    assert not set(names(train)) & set(names(val))
    assert sorted(names(train) + names(val)) == ["seg_a", "seg_b", "seg_c"]
    assert names(WaymoBoxes(waymo_v2, "val", **kw)) == names(val)
    assert names(WaymoBoxes(waymo_v2, "test", **kw)) == ["seg_v"]


def test_v2_bad_records_are_named(tmp_path):
    frames, boxes = _v2_segment_rows(7, seed=0)
    bad = [(b[0], b[1], b[2], (b[3][0] * 10, *b[3][1:])) if b[1] == 1 and b[2] == "car" else b
           for b in boxes]                                  # centre x in tenths of pixels: outside
    write_v2_segment(tmp_path / "validation", "seg_x", frames, bad)
    with pytest.raises(DatasetFormatError, match=r"camera_box/seg_x.parquet FRONT boxes at \d+: box \d \(id 'car'\)"):
        WaymoBoxes(tmp_path, "test", image_size=S, num_frames=T)[0]
    per_frame = [(b[0], b[1], f"{b[2]}-{b[0]}", b[3]) for b in boxes]   # ids not persistent
    write_v2_segment(tmp_path / "validation", "seg_x", frames, per_frame)
    with pytest.raises(DatasetFormatError, match="ids do not persist"):
        WaymoBoxes(tmp_path, "test", image_size=S, num_frames=T)
    write_v2_segment(tmp_path / "validation", "seg_x", frames + [f for f in frames if f[1] == 1][:1], boxes)
    with pytest.raises(DatasetFormatError, match="frame timestamps not strictly increasing"):
        WaymoBoxes(tmp_path, "test", image_size=S, num_frames=T)


# ----------------------------------------------------------------------------- converted layout

@pytest.fixture
def waymo(tmp_path, jpeg, write_json):
    for split, segs, n in (("training", ["segment-1", "segment-3", "segment-4"], 9),
                           ("validation", ["segment-1"], 7)):
        for name in segs:
            seg = tmp_path / split / name
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
    ds = WaymoBoxes(waymo, "test", image_size=S, num_frames=T, max_boxes=25)
    assert ds.layout == "converted"
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
    kw = dict(image_size=S, num_frames=T, val_fraction=0.5)     # 2 of the 4 training segments
    train, val = WaymoBoxes(waymo, "train", **kw), WaymoBoxes(waymo, "val", **kw)
    assert len(train) + len(val) == 3 and len(train.skipped) + len(val.skipped) == 1
    torch.manual_seed(0)
    item = train[0]
    boxes, valid = item["boxes"], item["box_valid"]
    # Largest first: 'van' (10 x 15 px) if in the window's first frame, then 'car' / peds.
    areas = ((boxes[:, 0, 2] - boxes[:, 0, 0]) * (boxes[:, 0, 3] - boxes[:, 0, 1]))
    assert (areas[:-1] >= areas[1:] - 1e-6).all() and (areas >= 0.005).all()
    # 'car' [5 + i, 0, 15 + i, 10] px -> x * 0.4 - 2, y * 0.4, over 8.
    start = round(float(item["video"][0].float().mean()) - 10) // 10
    car = ((np.array([5.0 + start, 0, 15.0 + start, 10]) * 0.4) - [2, 0, 2, 0]) / 8
    assert any(np.allclose(boxes[n, 0].numpy(), car, atol=1e-6) for n in range(25))


def test_track_absent_later_is_invalid(waymo):
    ds = WaymoBoxes(waymo, "train", image_size=S, num_frames=T, max_boxes=40, val_fraction=0.5)
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
    with pytest.raises(DatasetFormatError, match="split 'nope' not found"):
        WaymoBoxes(waymo, "nope")
    with pytest.raises(DatasetFormatError, match="no known layout"):
        WaymoBoxes(tmp_path / "training" / "segment-1", "test")
    seg = waymo / "validation" / "segment-1" / "boxes"
    (seg / "1000000.json").write_text('{"boxes": [{"id": "car", "box": [0.1, 0.1, 0.5, 0.4]}, '
                                      '{"id": "bus", "box": [5, 5, 40, 9]}]}')
    with pytest.raises(DatasetFormatError, match=r"1000000.json: box 1 \(id 'bus'\).*not inside the 30 x 20"):
        WaymoBoxes(waymo, "test", image_size=S, num_frames=7, frame_stride=1)[0]
    (seg / "1000000.json").write_text("{not json")
    for f in sorted(seg.glob("*.json"))[1:]:
        f.unlink()
    with pytest.raises(DatasetFormatError, match=r"(1000000.json: not a box file|box file: file not found)"):
        WaymoBoxes(waymo, "test", image_size=S, num_frames=T)[0]
