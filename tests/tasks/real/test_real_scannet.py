"""ScanNet depth reader on a tiny SensReader-style export."""

import numpy as np
import pytest
import torch

from tasks.real.common import DatasetFormatError
from tasks.real.scannet import ScanNetDepth

S, T = 8, 4
DEPTH_HW = (12, 16)          # the depth raster (640 x 480 in ScanNet, scaled down)
K_DEPTH = np.array([[20.0, 0, 8.0, 0], [0, 20.0, 6.0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])


def _scene(root, name, num_frames, jpeg, depth_png):
    scene = root / "scans" / name
    for i in range(num_frames):
        jpeg(scene / "color" / f"{i}.jpg", value=10 * i + 10, size=(24, 32))
        mm = np.full(DEPTH_HW, 1000 + 100 * i, np.uint16)
        mm[:, :4] = 0                      # a band with no measurement
        depth_png(scene / "depth" / f"{i}.png", mm)
    (scene / "intrinsic").mkdir(parents=True, exist_ok=True)
    np.savetxt(scene / "intrinsic" / "intrinsic_depth.txt", K_DEPTH)


@pytest.fixture
def scannet(tmp_path, jpeg, depth_png):
    _scene(tmp_path, "scene0000_00", 11, jpeg, depth_png)   # 11 frames: '10' sorts after '9'
    _scene(tmp_path, "scene0001_00", 2, jpeg, depth_png)    # too short for a clip
    _scene(tmp_path, "scene0002_00", 5, jpeg, depth_png)
    (tmp_path / "scannetv2_train.txt").write_text("scene0000_00\nscene0001_00\n")
    (tmp_path / "scannetv2_val.txt").write_text("scene0002_00\n")
    return tmp_path


def test_eval_clip_starts_at_frame_zero(scannet, decode_frame_ids):
    ds = ScanNetDepth(scannet, "val", image_size=S, num_frames=T)
    item = ds[0]
    assert item["video"].shape == (T, S, S, 3) and item["video"].dtype == torch.uint8
    assert item["depth"].shape == (T, S, S) and item["depth"].dtype == torch.float32
    assert list(decode_frame_ids(item["video"])) == [0, 1, 2, 3]
    # uint16 millimetres -> metres; the invalid band stays exactly 0 (nearest resize).
    valid = item["depth"] > 0
    assert torch.allclose(item["depth"][:, valid[0]].amax(dim=1), torch.tensor([1.0, 1.1, 1.2, 1.3]))
    assert (~valid).any() and set(item["depth"][~valid].tolist()) == {0.0}


def test_intrinsics_follow_resize_and_crop(scannet):
    k = ScanNetDepth(scannet, "val", image_size=S, num_frames=T)[0]["intrinsics"]
    # 12 x 16 -> short side 8: scale 2/3, width 16 -> 10.67 ~ 11, crop 1 column on the left.
    sx, sy = 11 / 16, 8 / 12
    expected = torch.tensor([[20 * sx, 0, 8 * sx - 1], [0, 20 * sy, 6 * sy], [0, 0, 1]])
    assert torch.allclose(k, expected.float(), atol=1e-5)


def test_train_random_start_and_short_scene_skipped(scannet, decode_frame_ids):
    ds = ScanNetDepth(scannet, "train", image_size=S, num_frames=T)
    assert len(ds) == 1 and len(ds.skipped) == 1 and "scene0001_00" in ds.skipped[0][0]
    torch.manual_seed(0)
    starts = {decode_frame_ids(ds[0]["video"])[0] for _ in range(12)}
    assert len(starts) > 1 and max(starts) <= 11 - T
    ids = decode_frame_ids(ds[0]["video"])
    assert list(np.diff(ids)) == [1] * (T - 1)


def test_bad_inputs(scannet, tmp_path):
    with pytest.raises(DatasetFormatError, match="folder not found"):
        ScanNetDepth(tmp_path / "nope", "train")
    with pytest.raises(DatasetFormatError, match="split 'test' not found"):
        ScanNetDepth(scannet, "test")
    (scannet / "scans/scene0002_00/depth/2.png").unlink()
    with pytest.raises(DatasetFormatError, match=r"depth/2.png"):
        ScanNetDepth(scannet, "val", image_size=S, num_frames=T)[0]
