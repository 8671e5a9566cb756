"""WALT's probing protocol follows each variant's pretraining (paper App. D.1, Sec. 3.3):
I-WALT takes an image as it is and a video frame by frame (the tokenizer's first-frame path,
as its pretraining data); V-WALT tiles an image and encodes a video through the causal path."""

import pytest
import torch
from einops import rearrange

from backbones.build import build_backbone
from pretraining.data import LatentBank
from tasks import kinds

KW = dict(size="tiny", tokenizer="tiny", image_size=16, num_frames=5, reuse=False)


def _video(b=2, T=5, H=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, T, H, H, 3), dtype=torch.uint8, generator=g)


def _frames_seen_by_tokenizer(backbone, video) -> list[int]:
    """The frame counts of the clips the tokenizer's encoder received for one features call."""
    seen = []
    hook = backbone.tokenizer.encoder.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[2]))
    try:
        feats = backbone.features(video, 100, [2], seeds=torch.arange(len(video)))
    finally:
        hook.remove()
    return seen, feats[2]


def test_defaults_follow_each_variants_pretraining():
    image, video = build_backbone(**KW, variant="image"), build_backbone(**KW, variant="video")
    assert (image.repeat_images, image.video_route) == (False, "frames")
    assert (video.repeat_images, video.video_route) == (True, "clip")
    explicit = build_backbone(**KW, variant="image", video_route="clip", repeat_images=True)
    assert (explicit.repeat_images, explicit.video_route) == (True, "clip")
    assert explicit.fingerprint != image.fingerprint             # the route is part of the cache key
    with pytest.raises(ValueError, match="video_route"):
        build_backbone(**KW, video_route="tubelets")


def test_i_walt_takes_an_image_as_it_is():
    bb = build_backbone(**KW, variant="image")
    seen, feats = _frames_seen_by_tokenizer(bb, _video(T=1))
    assert seen == [1]                                           # one frame in, no tiling
    assert feats.shape[1] == 1                                   # one latent frame out


def test_v_walt_tiles_an_image_and_the_image_kind_averages_over_time():
    bb = build_backbone(**KW, variant="video")
    seen, feats = _frames_seen_by_tokenizer(bb, _video(T=1))
    assert seen == [5] and feats.shape[1] == 2                  # tiled to 5 frames -> 2 latents
    task = kinds.classification("img", {}, 3, image_task=True, num_frames=17)
    (head_input,) = task.head_inputs(feats, {})
    assert head_input.shape == (2, 17, *feats.shape[2:])
    want = feats.mean(dim=1, keepdim=True).expand_as(head_input)
    torch.testing.assert_close(head_input, want, rtol=1e-5, atol=1e-5)


def test_i_walt_sees_a_video_frame_by_frame_on_its_default_route():
    bb = build_backbone(**KW, variant="image")
    video = _video(T=5)
    seen, feats = _frames_seen_by_tokenizer(bb, video)
    assert seen == [1] and feats.shape[1] == 5                  # every frame alone: t' = T
    changed = video.clone()
    changed[:, 3] = 255 - changed[:, 3]
    _, after = _frames_seen_by_tokenizer(bb, changed)
    keep = [0, 1, 2, 4]
    torch.testing.assert_close(after[:, keep], feats[:, keep], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(after[:, 3], feats[:, 3], atol=1e-3)


def test_i_walt_on_the_clip_route_sees_the_video_tokenizers_summaries():
    bb = build_backbone(**KW, variant="image", video_route="clip")
    video = _video(T=5)
    seen, feats = _frames_seen_by_tokenizer(bb, video)
    assert seen == [5] and feats.shape[1] == 2                  # latent 1 summarises frames 1-4
    changed = video.clone()
    changed[:, 3] = 255 - changed[:, 3]
    _, after = _frames_seen_by_tokenizer(bb, changed)
    torch.testing.assert_close(after[:, 0], feats[:, 0], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(after[:, 1], feats[:, 1], atol=1e-3)


def test_pretraining_and_probing_encode_through_the_same_path():
    """I-WALT's pretraining latents (LatentBank.frame_latents) are exactly what its probe encodes;
    V-WALT's clip latents likewise."""
    image, video = build_backbone(**KW, variant="image"), build_backbone(**KW, variant="video")
    clips = _video(b=3, T=5, seed=1)
    bank = LatentBank.encode(image.tokenizer, clips, device="cpu")
    torch.testing.assert_close(image.encode(clips),
                               rearrange(bank.frame_latents, "n T z h w -> n z T h w"),
                               rtol=0, atol=0)
    torch.testing.assert_close(video.encode(clips), bank.clip_latents, rtol=0, atol=0)


def test_feature_spans_follow_the_temporal_layout():
    video, image = build_backbone(**KW, variant="video"), build_backbone(**KW, variant="image")
    assert video.feature_spans(5).tolist() == [[0, 1], [1, 5]]
    assert video.feature_spans(17).tolist() == [[0, 1], [1, 5], [5, 9], [9, 13], [13, 17]]
    assert video.feature_spans(1).tolist() == [[0, 1], [1, 5]]   # a tiled image: the tiled clip
    assert image.feature_spans(5).tolist() == [[f, f + 1] for f in range(5)]
    assert image.feature_spans(1).tolist() == [[0, 1]]
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        video.feature_spans(6)
