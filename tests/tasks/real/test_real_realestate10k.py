"""RealEstate10K reader on a tiny camera file + extracted frames."""

import json

import numpy as np
import pytest
import torch

from tasks.real.common import DatasetFormatError
from tasks.real.realestate10k import RealEstate10K, relative_pose

S, T = 8, 3


def _rot_z(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def _c2w(i):
    """Camera i: rotated by 0.1 i about z, at (i, 0, 0.5 i) in the world."""
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = _rot_z(0.1 * i), [i, 0.0, 0.5 * i]
    return m


def _write_sequence(root, split, seq, n, jpeg, with_frames=True):
    lines = ["https://www.youtube.com/watch?v=xyz"]
    for i in range(n):
        w2c = np.linalg.inv(_c2w(i))[:3].reshape(-1)
        ts = 1000 + 33366 * i
        lines.append(" ".join(map(str, [ts, 0.5, 0.9, 0.5, 0.5, 0, 0, *w2c])))
        if with_frames:
            jpeg(root / "frames" / split / seq / f"{ts}.jpg", value=10 * i + 10, size=(18, 32))
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / split / f"{seq}.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def re10k(tmp_path, jpeg):
    _write_sequence(tmp_path, "train", "aaa", 6, jpeg)
    _write_sequence(tmp_path, "train", "aab", 6, jpeg)
    _write_sequence(tmp_path, "test", "bbb", 4, jpeg)
    _write_sequence(tmp_path, "test", "ccc", 4, jpeg, with_frames=False)
    return tmp_path


def test_relative_pose_convention():
    # The pose maps last-camera points into the first camera: inv(c2w_0) @ c2w_k.
    w2c = [np.linalg.inv(_c2w(i)) for i in (0, 3)]
    expected = (np.linalg.inv(_c2w(0)) @ _c2w(3))[:3]
    np.testing.assert_allclose(relative_pose(*w2c), expected, atol=1e-12)
    p_last = np.array([0.3, -0.2, 2.0, 1.0])
    world = _c2w(3) @ p_last
    np.testing.assert_allclose(relative_pose(*w2c) @ p_last, (np.linalg.inv(_c2w(0)) @ world)[:3])


def test_eval_item(re10k, decode_frame_ids):
    ds = RealEstate10K(re10k, "test", image_size=S, num_frames=T, stride=1)
    assert len(ds) == 1 and len(ds.skipped) == 1 and "ccc" in ds.skipped[0][0]
    item = ds[0]
    assert item["video"].shape == (T, S, S, 3) and list(decode_frame_ids(item["video"])) == [0, 1, 2]
    expected = (np.linalg.inv(_c2w(0)) @ _c2w(2))[:3]
    assert item["pose"].dtype == torch.float32
    np.testing.assert_allclose(item["pose"].numpy(), expected, atol=1e-5)
    # fx = 0.5 W = 16 px on 18 x 32 -> short side 8: scale 8/18 (width 32 -> 14, crop 3 left).
    k = item["intrinsics"].numpy()
    np.testing.assert_allclose(k[0], [16 * 14 / 32, 0, 16 * 14 / 32 - 3], atol=1e-5)
    np.testing.assert_allclose(k[1], [0, 0.9 * 18 * 8 / 18, 0.5 * 18 * 8 / 18], atol=1e-5)


@pytest.mark.parametrize("scale", [2.0, "json"])
def test_translation_scale(re10k, tmp_path, scale):
    if scale == "json":
        (tmp_path / "scales.json").write_text(json.dumps({"bbb": 2.0}))
        scale = str(tmp_path / "scales.json")
    base = RealEstate10K(re10k, "test", image_size=S, num_frames=T)[0]["pose"]
    scaled = RealEstate10K(re10k, "test", image_size=S, num_frames=T, translation_scale=scale)[0]["pose"]
    assert torch.allclose(scaled[:, :3], base[:, :3]) and torch.allclose(scaled[:, 3], 2 * base[:, 3])


def test_train_stride_and_random_start(re10k, decode_frame_ids):
    ds = RealEstate10K(re10k, "train", image_size=S, num_frames=T, stride=2)
    torch.manual_seed(0)
    for _ in range(4):
        ids = decode_frame_ids(ds[0]["video"])
        assert list(np.diff(ids)) == [2, 2] and ids[0] in (0, 1)


def test_bad_inputs(re10k, tmp_path):
    with pytest.raises(DatasetFormatError, match="split 'nope'"):
        RealEstate10K(re10k, "nope")
    lines = (re10k / "test" / "bbb.txt").read_text().splitlines()
    lines[3] = lines[3].replace(lines[3].split()[0], "5", 1)          # timestamp goes back
    (re10k / "test" / "bbb.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetFormatError, match=r"bbb.txt: timestamps \(column 1\) not strictly increasing at record 2"):
        RealEstate10K(re10k, "test")
    (re10k / "test" / "bbb.txt").write_text("url\n1 2 3\n")
    with pytest.raises(DatasetFormatError, match=r"bbb.txt:2: 3 numbers; expected 19"):
        RealEstate10K(re10k, "test")


def test_train_and_val_partition_the_train_sequences(re10k):
    names = lambda ds: [e[0] for e in ds.sequences]   # noqa: E731
    train, val = RealEstate10K(re10k, "train", image_size=S, num_frames=T), RealEstate10K(re10k, "val", image_size=S, num_frames=T)
    assert sorted(names(train) + names(val)) == ["aaa", "aab"] and len(names(val)) == 1
    assert names(RealEstate10K(re10k, "val", image_size=S, num_frames=T)) == names(val)


def write_pixelsplat_chunks(split_dir, sequences):
    """RealEstate10K as pixelSplat's converter stores it (dcharatan/pixelsplat; read by
    src/dataset/dataset_re10k.py): <split>/000000.torch = torch.save(list of {'url', 'key',
    'timestamps' int64 (N,), 'cameras' float32 (N, 18) = the camera line without its timestamp,
    'images': N uint8 1-D tensors of the frames' JPEG bytes}), <split>/index.json {key: file}."""
    import io
    from PIL import Image
    split_dir.mkdir(parents=True, exist_ok=True)
    chunk = []
    for key, (camera_lines, frames) in sequences.items():
        rows = np.array([[float(x) for x in ln.split()] for ln in camera_lines])
        images = []
        for f in frames:
            buf = io.BytesIO()
            Image.fromarray(f).save(buf, format="JPEG", quality=95)
            images.append(torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8))
        chunk.append({"url": "https://www.youtube.com/watch?v=xyz", "key": key,
                      "timestamps": torch.tensor(rows[:, 0], dtype=torch.int64),
                      "cameras": torch.tensor(rows[:, 1:], dtype=torch.float32), "images": images})
    torch.save(chunk, split_dir / "000000.torch")
    (split_dir / "index.json").write_text(json.dumps({k: "000000.torch" for k in sequences}))


def test_pixelsplat_chunks_only_when_asked(re10k, tmp_path):
    from PIL import Image
    root = tmp_path / "re10k_pixelsplat"
    for split, keys in (("train", ["aaa", "aab"]), ("test", ["bbb"])):
        seqs = {}
        for key in keys:
            lines = (re10k / split / f"{key}.txt").read_text().splitlines()[1:]
            frames = [np.asarray(Image.open(next((re10k / "frames" / split / key).glob(f"{ln.split()[0]}.*"))))
                      for ln in lines]
            seqs[key] = (lines, frames)
        write_pixelsplat_chunks(root / split, seqs)
    with pytest.raises(DatasetFormatError, match=r"found pixelSplat .torch chunks.*Python pickles.*allow_pickle = True"):
        RealEstate10K(root, "test")
    with pytest.raises(DatasetFormatError, match=r"pickles.*set RealEstate10K.allow_pickle = True"):
        RealEstate10K(root, "test", layout="pixelsplat")
    chunks = RealEstate10K(root, "test", image_size=S, num_frames=T, layout="pixelsplat", allow_pickle=True)
    files = RealEstate10K(re10k, "test", image_size=S, num_frames=T)
    a, b = chunks[0], files[0]
    np.testing.assert_allclose(a["pose"].numpy(), b["pose"].numpy(), atol=1e-5)   # float32 cameras
    np.testing.assert_allclose(a["intrinsics"].numpy(), b["intrinsics"].numpy(), atol=1e-4)
    assert (a["video"].float() - b["video"].float()).abs().mean() < 2         # re-encoded JPEG
    val = RealEstate10K(root, "val", image_size=S, num_frames=T, layout="pixelsplat", allow_pickle=True)
    assert len(val) == 1 and val.sequences[0][0] in ("aaa", "aab")
