"""PixArt-alpha / Latte adapters on tiny random pipelines of the real diffusers classes.

The references below are computed WITHOUT the adapter: the VAE, scheduler, T5 and transformer
loaded straight from the saved folders, the transformer called through its own forward with a
forward hook on the block.
"""

import sys
from pathlib import Path

import pytest
import torch
from einops import rearrange, repeat

sys.path.insert(0, str(Path(__file__).parent))
from pairs_fixtures import VIDEO_LENGTH, clip, save_pixart_latte  # noqa: E402

diffusers = pytest.importorskip("diffusers")

from backbones.base import Backbone  # noqa: E402
from backbones.hf_common import CallCounter, ClipShapeError, ModelDirError  # noqa: E402
from backbones.pixart_latte import (build_latte, build_pixart_alpha,  # noqa: E402
                                    spatial_weight_mismatches)
from walt.noise import eval_noise  # noqa: E402

T = 300


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return save_pixart_latte(tmp_path_factory.mktemp("pixart_latte"))


@pytest.fixture(scope="module")
def arms(dirs):
    return build_pixart_alpha(str(dirs[0]), device="cpu"), build_latte(str(dirs[1]), device="cpu")


def reference_inputs(root: Path, video, seeds, t, scheduler_cls):
    """z_t (b, 4, T, h, w) and the T5 null text, from the saved parts alone."""
    from transformers import AutoTokenizer, T5EncoderModel

    vae = diffusers.AutoencoderKL.from_pretrained(root / "vae")
    x = rearrange(video, "b T H W c -> (b T) c H W").float() / 127.5 - 1.0
    z0 = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
    z0 = rearrange(z0, "(b T) z h w -> b z T h w", b=video.shape[0])
    sched = scheduler_cls.from_config(scheduler_cls.load_config(root / "scheduler"))
    z_t = sched.add_noise(z0, eval_noise(z0.shape, seeds), torch.full((video.shape[0],), t))
    tok = AutoTokenizer.from_pretrained(root / "tokenizer")
    ids = tok([""], padding="max_length", max_length=120, return_tensors="pt")
    text = T5EncoderModel.from_pretrained(root / "text_encoder")(
        ids.input_ids, attention_mask=ids.attention_mask)[0]
    return z_t, text, ids.attention_mask


def hooked(module):
    seen = {}

    def hook(module, args, out):   # returns None: the forward continues unchanged
        seen["out"] = out
    return seen, module.register_forward_hook(hook)


@torch.no_grad()
@pytest.mark.parametrize("block", [0, 2])
def test_pixart_equals_library_forward_hook(dirs, arms, block):
    pixart, _ = arms
    video, seeds = clip(2, 3), torch.tensor([5, 6])
    z_t, text, mask = reference_inputs(dirs[0], video, seeds, T, diffusers.DDPMScheduler)
    model = diffusers.PixArtTransformer2DModel.from_pretrained(dirs[0] / "transformer")
    target = model.pos_embed if block == 0 else model.transformer_blocks[block - 1]
    seen, handle = hooked(target)
    n = 2 * 3   # frames as independent images
    model(rearrange(z_t, "b z T h w -> (b T) z h w"), encoder_hidden_states=text.expand(n, -1, -1),
          encoder_attention_mask=mask.expand(n, -1), timestep=torch.full((n,), T),
          added_cond_kwargs={"resolution": None, "aspect_ratio": None})
    handle.remove()
    want = rearrange(seen["out"], "(b T) (h w) d -> b T h w d", b=2, h=4)
    got = pixart.features(video, T, [block], seeds=seeds)[block]
    assert got.shape == (2, 3, 4, 4, 16)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("block", [0, 1, 3])
def test_latte_equals_library_forward_hook(dirs, arms, block):
    _, latte = arms
    video, seeds = clip(2, VIDEO_LENGTH, seed=1), torch.tensor([7, 8])
    z_t, text, mask = reference_inputs(dirs[1], video, seeds, T, diffusers.DDIMScheduler)
    model = diffusers.LatteTransformer3DModel.from_pretrained(dirs[1] / "transformer")
    target = model.pos_embed if block == 0 else model.temporal_transformer_blocks[block - 1]
    seen, handle = hooked(target)
    # LattePipeline(mask_feature=True): the null text cut to the tokens its mask keeps
    model(z_t, timestep=torch.full((2,), T), encoder_hidden_states=text[:, :int(mask.sum())].expand(2, -1, -1))
    handle.remove()
    pattern = ("(b T) (h w) d -> b T h w d" if block == 0 else "(b h w) T d -> b T h w d")
    want = rearrange(seen["out"], pattern, b=2, h=4, w=4)
    got = latte.features(video, T, [block], seeds=seeds)[block]
    assert got.shape == (2, VIDEO_LENGTH, 4, 4, 16)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_stops_after_deepest_block(arms):
    pixart, latte = arms
    video = clip(1, VIDEO_LENGTH)
    counters = [CallCounter(pixart.transformer.transformer_blocks),
                CallCounter(latte.transformer.transformer_blocks),
                CallCounter(latte.transformer.temporal_transformer_blocks),
                CallCounter([pixart.transformer.proj_out, latte.transformer.proj_out])]
    pixart.features(video, T, [0, 1])
    latte.features(video, T, [2])
    for c in counters:
        c.remove()
    assert counters[0].counts == [1, 0, 0]           # one call on all (b T) frames at once
    assert counters[1].counts == counters[2].counts == [1, 1, 0]   # block 2 = second pair
    assert counters[3].counts == [0, 0]


def test_noise_is_the_schedulers_own_and_log_snr_monotone(dirs, arms):
    z0 = torch.randn(2, 4, 3, 4, 4)
    seeds, t = torch.tensor([1, 2]), torch.tensor([10, 900])
    noise = eval_noise(z0.shape, seeds)
    for arm, root, cls in ((arms[0], dirs[0], diffusers.DDPMScheduler),      # saved: DPM-Solver
                           (arms[1], dirs[1], diffusers.DDIMScheduler)):
        sched = cls.from_config(cls.load_config(root / "scheduler"))
        torch.testing.assert_close(arm.add_noise(z0, t, seeds), sched.add_noise(z0, noise, t))
        levels = [arm.noise_level(s) for s in range(0, 1000, 37)]
        log_snr = [lv.log_snr for lv in levels]
        assert all(a > b for a, b in zip(log_snr, log_snr[1:])), "more t must mean more noise"
        assert all(a.walt_t < b.walt_t for a, b in zip(levels, levels[1:]))
    # the PixArt folder ships DPMSolverMultistep: same betas as the DDPM process used here
    saved = diffusers.DPMSolverMultistepScheduler.from_pretrained(dirs[0] / "scheduler")
    torch.testing.assert_close(saved.alphas_cumprod, arms[0].scheduler.alphas_cumprod)
    assert arms[0].scheduler_saved == "DPMSolverMultistepScheduler"


def test_frame_conventions_of_the_two_arms(arms):
    """Image arm: frames are independent images; video arm: frames mix; an image is tiled."""
    pixart, latte = arms
    video, seeds = clip(1, VIDEO_LENGTH, seed=3), torch.tensor([4])
    moved = video.clone()
    moved[:, 2] = 255 - moved[:, 2]
    for arm, frame0_changes in ((pixart, False), (latte, True)):
        a = arm.features(video, T, [3], seeds=seeds)[3]
        b = arm.features(moved, T, [3], seeds=seeds)[3]
        assert (not torch.allclose(a[:, 0], b[:, 0], atol=1e-6)) == frame0_changes, arm.name
    image = video[:, :1]
    tiled = latte.features(image, T, [1], seeds=seeds)[1]
    assert tiled.shape[1] == VIDEO_LENGTH
    torch.testing.assert_close(tiled, latte.features(repeat(image, "b 1 H W c -> b T H W c",
                                                            T=VIDEO_LENGTH), T, [1], seeds=seeds)[1])
    assert pixart.features(image, T, [1], seeds=seeds)[1].shape == (1, 1, 4, 4, 16)


def test_spatial_weights_identical_after_loading(arms):
    pixart, latte = arms
    assert spatial_weight_mismatches(pixart.transformer, latte.transformer) == []
    assert len(latte.transformer.temporal_transformer_blocks) == pixart.num_blocks == latte.num_blocks
    with torch.no_grad():   # the check can fail: one changed spatial tensor is named
        latte.transformer.transformer_blocks[1].attn1.to_q.weight.add_(1e-3)
    try:
        assert spatial_weight_mismatches(pixart.transformer, latte.transformer) == [
            "transformer_blocks.1.attn1.to_q.weight"]
    finally:
        with torch.no_grad():
            latte.transformer.transformer_blocks[1].attn1.to_q.weight.sub_(1e-3)


def test_describes_itself(arms):
    pixart, latte = arms
    for arm, variant in ((pixart, "image"), (latte, "video")):
        assert isinstance(arm, Backbone)
        assert (arm.family, arm.variant, arm.feature_dim, arm.num_blocks) == (
            "pixart-latte", variant, 16, 3)
        assert arm.noise_level(0).native == 0.0
    assert pixart.fingerprint != latte.fingerprint and len(pixart.fingerprint) == 16


def test_named_errors(dirs, arms, tmp_path):
    pixart_dir, latte_dir = dirs
    with pytest.raises(ModelDirError, match="not a directory"):
        build_pixart_alpha(str(tmp_path / "nowhere"))
    with pytest.raises(ModelDirError, match="LatteTransformer3DModel.*expected.*PixArtTransformer2DModel"):
        build_pixart_alpha(str(latte_dir))
    with pytest.raises(ModelDirError, match="pipeline root"):
        build_latte(str(latte_dir / "transformer"))
    with pytest.raises(ClipShapeError, match=f"exactly {VIDEO_LENGTH} frames"):
        arms[1].features(clip(1, 3), T, [1])
    with pytest.raises(ClipShapeError, match="nearest valid size is 16 x 32"):
        arms[0].features(torch.zeros(1, 1, 17, 31, 3, dtype=torch.uint8), T, [1])


def test_first_frames_cuts_longer_clips(arms):
    _, latte = arms
    video, seeds = clip(1, VIDEO_LENGTH + 1, seed=8), torch.tensor([1])
    before = latte.fingerprint
    latte.use_first_frames(VIDEO_LENGTH)
    try:
        assert latte.fingerprint != before   # a different preprocessing, a different cache key
        torch.testing.assert_close(latte.features(video, T, [2], seeds=seeds)[2],
                                   latte.features(video[:, :VIDEO_LENGTH], T, [2], seeds=seeds)[2])
    finally:
        latte.use_first_frames(None)
    assert latte.fingerprint == before


def test_fingerprint_follows_weights_not_the_folder(dirs, arms, tmp_path):
    import shutil

    copy = tmp_path / "pixart_copy"
    shutil.copytree(dirs[0], copy)
    same = build_pixart_alpha(str(copy), device="cpu")
    assert same.fingerprint == arms[0].fingerprint          # same bytes elsewhere: same cache key
    model = diffusers.PixArtTransformer2DModel.from_pretrained(copy / "transformer")
    with torch.no_grad():
        model.proj_out.bias.add_(1.0)
    model.save_pretrained(copy / "transformer")
    from backbones import hf_common
    hf_common._DIGESTS.pop(str((copy / "transformer").resolve()), None)   # the per-process cache
    assert build_pixart_alpha(str(copy), device="cpu").fingerprint != arms[0].fingerprint
