"""TAP-Vid evaluation pickles and Kubric MOVi-E training tracks on tiny fixtures."""

import io
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from tasks.real.common import DatasetFormatError
from tasks.real.point_tracking import KubricTracks, TapVidEval, load_tapvid_pickle, query_first

S, T = 16, 5


def _davis_entry(num_frames=24, num_points=3, seed=0):
    rng = np.random.default_rng(seed)
    video = np.stack([np.full((20, 24, 3), 5 * t, np.uint8) for t in range(num_frames)])
    points = rng.uniform(0.1, 0.9, (num_points, num_frames, 2)).astype(np.float32)
    occluded = np.zeros((num_points, num_frames), bool)
    occluded[1, :6] = True       # track 1 appears at frame 6 -> sampled index 2 (stride 3: 0,3,6)
    occluded[2, :] = True        # track 2 is never visible: no query, dropped
    return {"video": video, "points": points, "occluded": occluded}


@pytest.fixture
def davis_pickle(tmp_path):
    path = tmp_path / "tapvid_davis.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"bear": _davis_entry(), "cows": _davis_entry(seed=1)}, fh)
    return path


def test_query_first():
    occ = np.array([[True, False, False], [True, True, True], [False, True, False]])
    keep, qt = query_first(occ)
    assert list(keep) == [0, 2] and list(qt) == [1, 0]


def test_tapvid_eval_first_mode(davis_pickle):
    ds = TapVidEval(davis_pickle, image_size=S, num_frames=T, stride=3, num_points=None)
    item = ds[0]
    assert item["video"].shape == (T, S, S, 3) and item["video"].dtype == torch.uint8
    frames = np.arange(0, 3 * T, 3)
    # Frame t of the fixture is grey 5 t: the stride picks frames 0, 3, 6, ...
    np.testing.assert_allclose(item["video"].float().mean(dim=(1, 2, 3)).numpy(), 5 * frames)
    entry = _davis_entry()
    assert item["target_points"].shape == (2, T, 2) and item["occluded"].shape == (2, T)
    np.testing.assert_allclose(item["target_points"].numpy(), entry["points"][:2][:, frames] * S, rtol=1e-6)
    q = item["query_points"].numpy()
    assert list(q[:, 0]) == [0, 2]                       # first visible sampled frame
    # Query [t, y, x] equals the target [x, y] at the query frame.
    np.testing.assert_allclose(q[1, 1:], item["target_points"][1, 2].numpy()[::-1])


def test_tapvid_fixed_point_count(davis_pickle):
    ds = TapVidEval(davis_pickle, image_size=S, num_frames=T, stride=3, num_points=4)
    item = ds[1]
    assert item["query_points"].shape == (4, 3) and item["target_points"].shape == (4, T, 2)
    assert torch.equal(ds[1]["target_points"], item["target_points"])   # deterministic


def test_kinetics_style_pickle_with_jpeg_frames(tmp_path):
    entry = _davis_entry(num_frames=6)
    frames = []
    for f in entry["video"]:
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, format="JPEG")
        frames.append(buf.getvalue())
    entry["video"] = frames
    with open(tmp_path / "k.pkl", "wb") as fh:
        pickle.dump([entry], fh)
    videos = load_tapvid_pickle(tmp_path / "k.pkl")
    assert videos[0]["video"].shape == (6, 20, 24, 3)


def test_tapvid_bad_inputs(tmp_path):
    with pytest.raises(DatasetFormatError, match="not found"):
        TapVidEval(tmp_path / "missing.pkl")
    (tmp_path / "trunc.pkl").write_bytes(pickle.dumps({"a": 1})[:5])
    with pytest.raises(DatasetFormatError, match="trunc.pkl is not a readable TAP-Vid pickle"):
        TapVidEval(tmp_path / "trunc.pkl")
    with open(tmp_path / "wrong.pkl", "wb") as fh:
        pickle.dump({"a": {"video": np.zeros((2, 4, 4, 3), np.uint8)}}, fh)
    with pytest.raises(DatasetFormatError, match="entry 'a' lacks"):
        TapVidEval(tmp_path / "wrong.pkl")


def _kubric_npz(path, num_frames=8, hw=(40, 48), num_points=12, seed=0):
    """A video whose pixel (y, x) holds R = 4 x, G = 4 y, so a crop can be checked by reading it."""
    rng = np.random.default_rng(seed)
    h, w = hw
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    frame = np.stack([4 * xx, 4 * yy, np.zeros_like(xx)], -1).astype(np.uint8)
    video = np.repeat(frame[None], num_frames, axis=0)
    pts = np.stack([rng.integers(4, w - 4, num_points), rng.integers(4, h - 4, num_points)], -1)
    pts = np.repeat(pts[:, None], num_frames, axis=1).astype(np.float32) + 0.5   # pixel centres
    occluded = np.zeros((num_points, num_frames), bool)
    occluded[0] = True                        # never a query: hidden in the first frame
    np.savez(path, video=video, target_points=pts, occluded=occluded)
    return pts


def test_kubric_item_keys_and_queries(tmp_path):
    _kubric_npz(tmp_path / "0000.npz")
    ds = KubricTracks(tmp_path, image_size=S, num_frames=T, num_points=20)
    torch.manual_seed(0)
    for _ in range(5):
        item = ds[0]
        assert item["video"].shape == (T, S, S, 3) and item["video"].dtype == torch.uint8
        tp, occ, q = item["target_points"], item["occluded"], item["query_points"]
        assert tp.shape == (20, T, 2) and occ.shape == (20, T) and q.shape == (20, 3)
        assert (q[:, 0] == 0).all() and not occ[:, 0].any()          # queries from frame 0
        np.testing.assert_allclose(q[:, 1:].numpy(), tp[:, 0].numpy()[:, ::-1])
        vis = tp[~occ]
        assert ((vis >= 0) & (vis < S)).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kubric_crop_moves_points_with_pixels(tmp_path, seed):
    src = _kubric_npz(tmp_path / "0000.npz", num_points=30, seed=seed)[:, 0]
    ds = KubricTracks(tmp_path, image_size=S, num_frames=T, num_points=8)
    torch.manual_seed(seed)
    item = ds[0]
    frame = item["video"][0].float().numpy()
    for x, y in item["target_points"][:, 0].numpy():
        r, g = frame[int(y), int(x), :2]
        seen = np.array([r / 4 + 0.5, g / 4 + 0.5])             # source coordinates under (x, y)
        # One output pixel spans at most 48 / 16 = 3 source pixels: allow that plus blur.
        assert np.min(np.abs(src - seen).max(axis=1)) <= 4.0, (x, y, seen)


def test_kubric_bad_inputs(tmp_path):
    with pytest.raises(DatasetFormatError, match="has no .npz files"):
        KubricTracks(tmp_path)
    np.savez(tmp_path / "bad.npz", video=np.zeros((4, 8, 8, 3), np.uint8))
    with pytest.raises(DatasetFormatError, match="bad.npz: not a Kubric track file"):
        KubricTracks(tmp_path)[0]
