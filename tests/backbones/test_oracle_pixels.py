"""The oracle and pixel backbones: the contract, the fields they promise, and refusal of
clips that are not what the oracle thinks they are."""

import einops
import pytest
import torch

from backbones.base import Backbone
from backbones.oracle import NOISE_STRIDE, OracleBackbone, latent_frames
from backbones.pixels import PixelsBackbone, rgb_tokens
from tasks.synthetic import builders

SIZES = dict(num_train=2, num_val=1, num_test=1, image_size=32, num_frames=9)


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _batch(name, tmp_path, split="test"):
    data = builders.analog_datasets(name, cache_dir=str(tmp_path), **SIZES)
    items = [data[split][i] for i in range(len(data[split]))]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def _oracle(name, **kw):
    return OracleBackbone(name, image_size=SIZES["image_size"], num_frames=SIZES["num_frames"], **kw)


def test_latent_grid_frames():
    assert latent_frames(17) == [0, 4, 8, 12, 16] and latent_frames(1) == [0]
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        latent_frames(16)


def test_oracle_depth_and_pose_fields_are_the_targets(tmp_path):
    batch = _batch("depth", tmp_path)
    oracle = _oracle("depth")
    assert isinstance(oracle, Backbone) and oracle.noise_level(0) is None
    seeds = batch["index"] + 3 * NOISE_STRIDE              # any noise_seed finds the clip
    feats = oracle.features(batch["video"], 0, [0], seeds=seeds)[0]
    assert feats.shape == (1, 3, 4, 4, 64) and oracle.feature_dim == 64
    # token (k, i, j), channel (p1, p2) = depth of frame 4k, pixel (8i + p1, 8j + p2)
    want = einops.rearrange(batch["depth"][:, [0, 4, 8]], "b T (h p1) (w p2) -> b T h w (p1 p2)",
                            p1=8, p2=8)
    torch.testing.assert_close(feats, want, atol=2e-3, rtol=1e-3)   # targets stored as float16
    frames = _oracle("depth", time_grid="frames").features(batch["video"], 0, [0], seeds=seeds)[0]
    assert frames.shape[1] == 9

    pose_batch = _batch("pose", tmp_path)
    pose = _oracle("pose").features(pose_batch["video"], 0, [0], seeds=pose_batch["index"])[0]
    last = einops.rearrange(pose[:, -1, 0, 0, -12:], "b (i j) -> b i j", i=3)
    torch.testing.assert_close(last, pose_batch["pose"], atol=1e-4, rtol=1e-4)
    first = einops.rearrange(pose[:, 0, 2, 1, -12:], "b (i j) -> b i j", i=3)
    torch.testing.assert_close(first, torch.eye(3, 4).expand_as(first), atol=1e-5, rtol=0)


def test_oracle_tracking_fields_follow_the_surface(tmp_path):
    batch = _batch("point_tracks", tmp_path, split="val")
    feats = _oracle("point_tracks", time_grid="frames").features(
        batch["video"], 0, [0], seeds=batch["index"])[0]
    fields = einops.rearrange(feats, "b T h w (p1 p2 f) -> b T (h p1) (w p2) f", p1=8, p2=8)
    assert fields.shape[-1] == 16
    # one-hot surface; pixel centres in the last two fields
    assert torch.equal(fields[..., :11].sum(-1), torch.ones(fields.shape[:-1]))
    torch.testing.assert_close(fields[0, 0, 5, 7, -2:], torch.tensor([7.5 / 32, 5.5 / 32]))
    # a visible query's surface-frame point is the same at its target position in a later frame
    query, target, occluded = batch["query_points"][0], batch["target_points"][0], batch["occluded"][0]
    gaps = []
    for q in range(query.shape[0]):
        for t in range(1, 9):
            x, y = target[q, t]
            xi, yi = int(x), int(y)
            if occluded[q, t] or abs(x - xi - 0.5) > 0.1 or abs(y - yi - 0.5) > 0.1:
                continue   # compare only where the track lands near a pixel centre
            row, col = int(query[q, 1]), int(query[q, 2])
            gaps.append(float((fields[0, t, yi, xi, 11:14] - fields[0, 0, row, col, 11:14]).norm()))
    # within a tenth of a pixel of the same surface point (a pixel is ~0.1 m here); a track
    # at a silhouette edge may land on the neighbouring surface, hence the median
    assert len(gaps) >= 5 and sorted(gaps)[len(gaps) // 2] < 0.03, gaps


def test_oracle_refuses_a_clip_of_other_data(tmp_path):
    batch = _batch("depth", tmp_path)
    with pytest.raises(ValueError, match="is not item"):
        OracleBackbone("depth", seed=1, image_size=32, num_frames=9).features(
            batch["video"], 0, [0], seeds=batch["index"])
    with pytest.raises(ValueError, match="seeds"):
        _oracle("depth").features(batch["video"], 0, [0])
    assert _oracle("depth").fingerprint != _oracle("depth", time_grid="frames").fingerprint


def test_classification_oracle_is_one_hot_label(tmp_path):
    batch = _batch("objects", tmp_path, split="train")
    feats = _oracle("objects").features(batch["video"], 0, [0], seeds=batch["index"])[0]
    assert feats.shape == (2, 1, 4, 4, 24)
    assert torch.equal(feats[:, 0, 1, 2].argmax(-1), batch["label"])


def test_rgb_tokens_are_the_clip_rearranged():
    video = torch.randint(0, 256, (2, 9, 16, 16, 3), dtype=torch.uint8)
    tok = rgb_tokens(video, 8, "latent")                           # (2, 3, 2, 2, 4 * 8 * 8 * 3)
    assert tok.shape == (2, 3, 2, 2, 768)
    tubes = einops.rearrange(tok, "b t h w (f p1 p2 c) -> b t f (h p1) (w p2) c", f=4, p1=8, p2=8)
    unit = video.float() / 127.5 - 1
    assert torch.equal(tubes[:, 1], unit[:, 1:5]) and torch.equal(tubes[:, 2], unit[:, 5:9])
    assert torch.equal(tubes[:, 0], unit[:, :1].expand(2, 4, 16, 16, 3))   # frame 0 padded
    image = PixelsBackbone().features(video[:, :1], 0, [0])[0]      # one tubelet, same width
    assert image.shape == (2, 1, 2, 2, PixelsBackbone().feature_dim)
    frames = PixelsBackbone(time_grid="frames")
    assert isinstance(frames, Backbone) and frames.features(video, 0, [0])[0].shape == (2, 9, 2, 2, 192)


def test_tokenizer_latents_mode():
    pixels = PixelsBackbone("latents", tokenizer_checkpoint="checkpoints/tokenizer_small.safetensors")
    video = torch.randint(0, 256, (1, 9, 32, 32, 3), dtype=torch.uint8)
    feats = pixels.features(video, 0, [0])[0]
    assert feats.shape == (1, 3, 4, 4, pixels.feature_dim) and torch.isfinite(feats).all()
    with pytest.raises(ValueError, match="tokenizer_checkpoint"):
        PixelsBackbone("latents")
