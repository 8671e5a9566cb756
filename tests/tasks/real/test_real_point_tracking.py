"""TAP-Vid evaluation pickles and Kubric MOVi-E training tracks on tiny fixtures."""

import io
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from tasks.real.common import DatasetFormatError
from tasks.real.point_tracking import (KubricTracks, TapVidEval, load_tapvid_pickle, query_first,
                                       tapvid_frames)

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


def _smooth_frames(num_frames, hw=(48, 64)):
    """Smooth colour ramps that drift over time: JPEG reproduces them to within a few levels."""
    h, w = hw
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    return np.stack([np.stack([60 + 120 * xx + 3 * t, 40 + 150 * yy, 200 - 100 * xx * yy], -1)
                     for t in range(num_frames)]).round().astype(np.uint8)


def write_tapvid_kinetics_shards(folder, videos, num_shards=10):
    """TAP-Vid-Kinetics shards as tapnet's generate_tapvid.py writes them.

    Mirrors google-deepmind/tapnet tapnet/tapvid/generate_tapvid.py (generate_example, main):
    per video {'video': np.array(tuple of JPEG bytes) (dtype 'S'), 'points': float64 (N, T, 2)
    [x, y] shifted by half a pixel, (x W - 0.5) / W, 'occluded': bool (N, T)}; videos split into
    ceil(n / num_shards) per shard, each shard a pickled *list* in f'{shard:04}_of_{num_shards:04}.pkl'.
    The CSV's coordinates are in [0, 1] (pixel centre of the top-left pixel at 0.5 / W).
    """
    folder.mkdir(parents=True, exist_ok=True)
    per_shard = int(np.ceil(len(videos) / num_shards))
    shard, data = 0, []
    for i, (frames, csv_xy, occluded) in enumerate(videos):
        encoded = []
        for f in frames:    # ffmpeg's image2pipe gives one JPEG per frame; PIL stands in for it
            buf = io.BytesIO()
            Image.fromarray(f).save(buf, format="JPEG", quality=90)
            encoded.append(buf.getvalue())
        height, width = frames.shape[1:3]
        points = np.stack([(csv_xy[..., 0] * width - 0.5) / width,
                           (csv_xy[..., 1] * height - 0.5) / height], -1)
        data.append({"video": np.array(tuple(encoded)),
                     "points": np.array(points, dtype=np.float64),
                     "occluded": np.array(occluded, dtype=bool)})
        if i == len(videos) - 1 or len(data) == per_shard:
            with open(folder / f"{shard:04}_of_{num_shards:04}.pkl", "wb") as fh:
                pickle.dump(data, fh)
            data = []
            shard += 1
    return folder


@pytest.fixture
def tapvid_kinetics(tmp_path):
    rng = np.random.default_rng(0)
    videos = []
    for v in range(3):
        frames = _smooth_frames(20 + v)
        xy = rng.uniform(0.05, 0.95, (4, len(frames), 2))
        occ = np.zeros((4, len(frames)), bool)
        occ[3, :5] = True
        videos.append((frames, xy, occ))
    write_tapvid_kinetics_shards(tmp_path / "tapvid_kinetics", videos, num_shards=2)
    return tmp_path / "tapvid_kinetics", videos


def test_tapvid_kinetics_as_generate_tapvid_writes_it(tapvid_kinetics):
    """Must hold (issue 23): generate_tapvid.py's shards are read and their JPEGs decoded."""
    folder, videos = tapvid_kinetics
    shard = pickle.load(open(folder / "0000_of_0002.pkl", "rb"))
    assert isinstance(shard, list) and shard[0]["video"].dtype.kind == "S"   # as the writer makes it
    loaded = load_tapvid_pickle(folder)
    assert [v["name"] for v in loaded] == ["0000_of_0002:0", "0000_of_0002:1", "0001_of_0002:0"]
    for entry, (frames, _, _) in zip(loaded, videos):
        decoded = tapvid_frames(entry)
        assert decoded.dtype == np.uint8 and decoded.shape == frames.shape
        err = np.abs(decoded.astype(np.float64) - frames)
        assert err.mean() < 2.0 and err.max() < 24        # JPEG error, not a different frame
    # The evaluation reader takes the folder, a glob or one shard.
    ds = TapVidEval(folder, image_size=S, num_frames=T, stride=4, num_points=None)
    assert len(ds) == 3 and len(TapVidEval(str(folder / "*_of_0002.pkl"), image_size=S, num_frames=T)) == 3
    assert len(TapVidEval(folder / "0001_of_0002.pkl", image_size=S, num_frames=T)) == 1
    item = ds[0]
    assert item["video"].dtype == torch.uint8 and item["video"].shape == (T, S, S, 3)
    frames = videos[0][0][np.arange(0, 4 * T, 4)]
    expected = torch.nn.functional.interpolate(torch.from_numpy(frames).permute(0, 3, 1, 2).float(),
                                               size=(S, S), mode="bilinear", antialias=True)
    assert (item["video"].permute(0, 3, 1, 2).float() - expected).abs().mean() < 3.0
    # Points: the writer's [0, 1] coordinates times the raster side.
    xy = videos[0][1][:, np.arange(0, 4 * T, 4)]
    shifted = (xy * [64, 48] - 0.5) / [64, 48]
    np.testing.assert_allclose(item["target_points"].numpy(), shifted * S, rtol=1e-5)


def test_tapvid_bad_points_name_the_record(tmp_path):
    entry = _davis_entry()
    entry["points"][1, 7] = [3.0, 0.5]          # visible (frame 7 >= 6), in pixels by mistake
    with open(tmp_path / "px.pkl", "wb") as fh:
        pickle.dump({"bear": entry}, fh)
    with pytest.raises(DatasetFormatError, match=r"px.pkl video 'bear': track 1 frame 7 .* outside"):
        load_tapvid_pickle(tmp_path / "px.pkl")
    entry = _davis_entry()
    entry["video"] = entry["video"].astype(np.float32) / 255
    with open(tmp_path / "f.pkl", "wb") as fh:
        pickle.dump({"bear": entry}, fh)
    with pytest.raises(DatasetFormatError, match="video has dtype float32.*expected uint8"):
        load_tapvid_pickle(tmp_path / "f.pkl")
    with pytest.raises(DatasetFormatError, match="matches no .pkl"):
        load_tapvid_pickle(str(tmp_path / "none_*.pkl"))


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


def test_kubric_bad_records_are_named(tmp_path):
    pts = _kubric_npz(tmp_path / "0000.npz")
    with np.load(tmp_path / "0000.npz") as z:
        video, occluded = z["video"], z["occluded"]
    bad = pts.copy()
    bad[2, 3] = [480.0, 5.0]
    np.savez(tmp_path / "0001.npz", video=video, target_points=bad, occluded=occluded)
    ds = KubricTracks(tmp_path, image_size=S, num_frames=T)
    with pytest.raises(DatasetFormatError, match=r"0001.npz: track 2 frame 3 is visible at .* outside the 48 x 40"):
        ds[1]
    np.savez(tmp_path / "0001.npz", video=video.astype(np.float32), target_points=pts, occluded=occluded)
    with pytest.raises(DatasetFormatError, match=r"0001.npz: video has dtype float32"):
        ds[1]
