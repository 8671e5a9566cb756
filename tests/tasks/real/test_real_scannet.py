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
    _scene(tmp_path, "scene0003_00", 11, jpeg, depth_png)
    (tmp_path / "scannetv2_train.txt").write_text("scene0000_00\nscene0001_00\nscene0003_00\n")
    (tmp_path / "scannetv2_val.txt").write_text("scene0002_00\n")
    return tmp_path


def test_eval_clip_starts_at_frame_zero(scannet, decode_frame_ids):
    ds = ScanNetDepth(scannet, "test", image_size=S, num_frames=T)
    item = ds[0]
    assert item["video"].shape == (T, S, S, 3) and item["video"].dtype == torch.uint8
    assert item["depth"].shape == (T, S, S) and item["depth"].dtype == torch.float32
    assert list(decode_frame_ids(item["video"])) == [0, 1, 2, 3]
    # uint16 millimetres -> metres; the invalid band stays exactly 0 (nearest resize).
    valid = item["depth"] > 0
    assert torch.allclose(item["depth"][:, valid[0]].amax(dim=1), torch.tensor([1.0, 1.1, 1.2, 1.3]))
    assert (~valid).any() and set(item["depth"][~valid].tolist()) == {0.0}


def test_intrinsics_follow_resize_and_crop(scannet):
    k = ScanNetDepth(scannet, "test", image_size=S, num_frames=T)[0]["intrinsics"]
    # 12 x 16 -> short side 8: scale 2/3, width 16 -> 10.67 ~ 11, crop 1 column on the left.
    sx, sy = 11 / 16, 8 / 12
    expected = torch.tensor([[20 * sx, 0, 8 * sx - 1], [0, 20 * sy, 6 * sy], [0, 0, 1]])
    assert torch.allclose(k, expected.float(), atol=1e-5)


def test_train_random_start_and_short_scene_skipped(scannet, decode_frame_ids):
    kw = dict(image_size=S, num_frames=T, val_fraction=0.3)
    ds, val = ScanNetDepth(scannet, "train", **kw), ScanNetDepth(scannet, "val", **kw)
    # Scenes, not frames, are split: the three training scenes go to one side each.
    assert len(ds.scenes) + len(val.scenes) + len(ds.skipped) + len(val.skipped) == 3
    assert not {s.folder for s in ds.scenes} & {s.folder for s in val.scenes}
    skipped = ds.skipped + val.skipped
    assert len(skipped) == 1 and "scene0001_00" in skipped[0][0]
    torch.manual_seed(0)
    starts = {decode_frame_ids(ds[0]["video"])[0] for _ in range(12)}
    assert len(starts) > 1 and max(starts) <= 11 - T
    ids = decode_frame_ids(ds[0]["video"])
    assert list(np.diff(ids)) == [1] * (T - 1)


def test_bad_inputs(scannet, tmp_path):
    with pytest.raises(DatasetFormatError, match="folder not found"):
        ScanNetDepth(tmp_path / "nope", "train")
    with pytest.raises(DatasetFormatError, match="split 'validation' not found"):
        ScanNetDepth(scannet, "validation")
    (scannet / "scans/scene0002_00/depth/2.png").unlink()
    with pytest.raises(DatasetFormatError, match=r"depth/2.png"):
        ScanNetDepth(scannet, "test", image_size=S, num_frames=T)[0]
    (scannet / "scannetv2_val.txt").write_text("scene9999_00\n")
    with pytest.raises(DatasetFormatError, match=r"lists scenes such as 'scene9999_00', expected in .*scans/"):
        ScanNetDepth(scannet, "test")


def write_cpp_sensreader_scene(folder, num_frames, jpeg, depth_shift=1000.0):
    """A scene as ScanNet's C++ SensReader exports it (`sens <scene>.sens <folder>`).

    Mirrors ScanNet SensReader/src/sensorData.h, SensorData::saveToImages ('7-scenes format'):
    _info.txt ('m_key = value' lines; the 4 x 4 calibrations as 16 numbers, row-major),
    frame-%06d.color.jpg (the stored JPEG), frame-%06d.depth.pgm (saveAsPGM: binary P5 with a
    '# data values are 16-bit each; depth shift is ...' comment, maxval 65535, big-endian
    16-bit), frame-%06d.pose.txt (4 x 4 camera-to-world).
    """
    folder.mkdir(parents=True, exist_ok=True)
    k_color = [30.0, 0, 16, 0, 0, 30, 12, 0, 0, 0, 1, 0, 0, 0, 0, 1]
    info = {"m_versionNumber": "4", "m_sensorName": "StructureSensor", "m_colorWidth": "32",
            "m_colorHeight": "24", "m_depthWidth": str(DEPTH_HW[1]), "m_depthHeight": str(DEPTH_HW[0]),
            "m_depthShift": f"{depth_shift:g}",
            "m_calibrationColorIntrinsic": " ".join(f"{v:g}" for v in k_color) + " ",
            "m_calibrationColorExtrinsic": " ".join(f"{v:g}" for v in np.eye(4).ravel()) + " ",
            "m_calibrationDepthIntrinsic": " ".join(f"{v:g}" for v in K_DEPTH.ravel()) + " ",
            "m_calibrationDepthExtrinsic": " ".join(f"{v:g}" for v in np.eye(4).ravel()) + " ",
            "m_frames.size": str(num_frames)}
    (folder / "_info.txt").write_text("".join(f"{k} = {v}\n" for k, v in info.items()))
    for i in range(num_frames):
        jpeg(folder / f"frame-{i:06d}.color.jpg", value=10 * i + 10, size=(24, 32))
        units = np.full(DEPTH_HW, (1.0 + 0.1 * i) * depth_shift, np.float64).round().astype(np.uint16)
        units[:, :4] = 0
        header = (f"P5\n# data values are 16-bit each; depth shift is {depth_shift:g}\n"
                  f"{DEPTH_HW[1]} {DEPTH_HW[0]}\n65535\n").encode()
        (folder / f"frame-{i:06d}.depth.pgm").write_bytes(header + units.astype(">u2").tobytes())
        np.savetxt(folder / f"frame-{i:06d}.pose.txt", np.eye(4))


def test_cpp_sensreader_export(tmp_path, jpeg, decode_frame_ids):
    for name in ("scene0000_00", "scene0001_00"):
        write_cpp_sensreader_scene(tmp_path / "scans" / name, 6, jpeg)
    write_cpp_sensreader_scene(tmp_path / "scans" / "scene0002_00", 5, jpeg, depth_shift=4000.0)
    (tmp_path / "scannetv2_train.txt").write_text("scene0000_00\nscene0001_00\n")
    (tmp_path / "scannetv2_val.txt").write_text("scene0002_00\n")
    ds = ScanNetDepth(tmp_path, "test", image_size=S, num_frames=T)
    assert ds.scenes[0].layout == "cpp"
    item = ds[0]
    assert list(decode_frame_ids(item["video"])) == [0, 1, 2, 3]
    valid = item["depth"] > 0
    # Units of 1 / m_depthShift metres (4000 here), not millimetres.
    assert torch.allclose(item["depth"][:, valid[0]].amax(dim=1), torch.tensor([1.0, 1.1, 1.2, 1.3]))
    sx, sy = 11 / 16, 8 / 12
    expected = torch.tensor([[20 * sx, 0, 8 * sx - 1], [0, 20 * sy, 6 * sy], [0, 0, 1]])
    assert torch.allclose(item["intrinsics"], expected.float(), atol=1e-5)


def test_scannet_frames_25k(tmp_path, jpeg, depth_png, decode_frame_ids):
    """scannet_frames_25k: color/000000.jpg, depth/000000.png every 100 frames, intrinsics at the
    scene root (intrinsics_color.txt, intrinsics_depth.txt), pose/000000.txt."""
    for name, n in (("scene0000_00", 5), ("scene0001_00", 5), ("scene0011_00", 6)):
        scene = tmp_path / "scannet_frames_25k" / name
        for i in range(n):
            jpeg(scene / "color" / f"{100 * i:06d}.jpg", value=10 * i + 10, size=(24, 32))
            mm = np.full(DEPTH_HW, 1000 + 100 * i, np.uint16)
            depth_png(scene / "depth" / f"{100 * i:06d}.png", mm)
            (scene / "pose").mkdir(exist_ok=True)
            np.savetxt(scene / "pose" / f"{100 * i:06d}.txt", np.eye(4))
        np.savetxt(scene / "intrinsics_depth.txt", K_DEPTH)
        np.savetxt(scene / "intrinsics_color.txt", K_DEPTH * 2)
    (tmp_path / "scannetv2_train.txt").write_text("scene0000_00\nscene0001_00\n")
    (tmp_path / "scannetv2_val.txt").write_text("scene0011_00\n")
    ds = ScanNetDepth(tmp_path, "test", image_size=S, num_frames=T)
    assert ds.scenes[0].layout == "frames_25k" and ds.scenes[0].frames[:2] == ["000000", "000100"]
    item = ds[0]
    assert list(decode_frame_ids(item["video"])) == [0, 1, 2, 3]
    assert torch.allclose(item["depth"].amax(dim=(1, 2)), torch.tensor([1.0, 1.1, 1.2, 1.3]))
