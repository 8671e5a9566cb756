"""SD 1.5 UNet / AnimateDiff adapters on tiny random pipelines of the real diffusers classes.

References are computed without the adapter: VAE, scheduler, CLIP and the UNet loaded straight
from the saved folders (AnimateDiff assembled with UNetMotionModel.from_unet2d), the UNet called
through its own forward with a forward hook on the block.
"""

import sys
from pathlib import Path

import pytest
import torch
from einops import rearrange, repeat

sys.path.insert(0, str(Path(__file__).parent))
from pairs_fixtures import clip, save_sd15_motion  # noqa: E402

diffusers = pytest.importorskip("diffusers")

from backbones.base import Backbone  # noqa: E402
from backbones.hf_common import CallCounter, ClipShapeError, ModelDirError  # noqa: E402
from backbones.sd_unet import build_animatediff, build_sd15, spatial_weight_mismatches  # noqa: E402
from walt.noise import eval_noise  # noqa: E402

T, FRAMES = 400, 4
# tiny UNet: 2 down blocks -> 0 conv_in, 1-2 down, 3 mid, 4-5 up (DIFT up_ft_index 1 = block 5)
GRID = {0: (8, 8), 1: (4, 4), 2: (4, 4), 3: (4, 4), 4: (8, 8), 5: (8, 8)}


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return save_sd15_motion(tmp_path_factory.mktemp("sd15"))


@pytest.fixture(scope="module")
def arms(dirs):
    return (build_sd15(str(dirs[0]), device="cpu"),
            build_animatediff(str(dirs[0]), str(dirs[1]), device="cpu", num_frames=FRAMES))


def library_unet(dirs, variant):
    unet = diffusers.UNet2DConditionModel.from_pretrained(dirs[0] / "unet")
    if variant == "image":
        return unet
    return diffusers.UNetMotionModel.from_unet2d(
        unet, diffusers.MotionAdapter.from_pretrained(dirs[1]))


def reference_inputs(root: Path, video, seeds, t):
    """z_t (b, 4, T, h, w) and the CLIP null text (1, 77, d), from the saved parts alone."""
    from transformers import CLIPTextModel, CLIPTokenizer

    vae = diffusers.AutoencoderKL.from_pretrained(root / "vae")
    x = rearrange(video, "b T H W c -> (b T) c H W").float() / 127.5 - 1.0
    z0 = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
    z0 = rearrange(z0, "(b T) z h w -> b z T h w", b=video.shape[0])
    sched = diffusers.PNDMScheduler.from_pretrained(root / "scheduler")
    z_t = sched.add_noise(z0, eval_noise(z0.shape, seeds), torch.full((video.shape[0],), t))
    tok = CLIPTokenizer.from_pretrained(root / "tokenizer")
    ids = tok([""], padding="max_length", max_length=tok.model_max_length, return_tensors="pt")
    return z_t, CLIPTextModel.from_pretrained(root / "text_encoder")(ids.input_ids)[0]


def block_module(unet, block):
    return [unet.conv_in, *unet.down_blocks, unet.mid_block, *unet.up_blocks][block]


@torch.no_grad()
@pytest.mark.parametrize("variant", ["image", "video"])
@pytest.mark.parametrize("block", [1, 3, 5])
def test_equals_library_forward_hook(dirs, arms, variant, block):
    arm = arms[0] if variant == "image" else arms[1]
    video, seeds = clip(2, FRAMES, seed=block), torch.tensor([3, 9])
    z_t, text = reference_inputs(dirs[0], video, seeds, T)
    unet = library_unet(dirs, variant)
    seen = {}

    def hook(module, args, out):   # returns None: the forward continues unchanged
        seen["out"] = out[0] if isinstance(out, tuple) else out
    handle = block_module(unet, block).register_forward_hook(hook)
    text = repeat(text, "1 n d -> (b T) n d", b=2, T=FRAMES)
    if variant == "image":   # frames as independent images
        unet(rearrange(z_t, "b z T h w -> (b T) z h w"), torch.full((2 * FRAMES,), T),
             encoder_hidden_states=text)
    else:                    # AnimateDiffPipeline: the prompt repeated per frame
        unet(z_t, torch.full((2,), T), encoder_hidden_states=text)
    handle.remove()
    want = rearrange(seen["out"], "(b T) d h w -> b T h w d", b=2)
    got = arm.features(video, T, [block], seeds=seeds)[block]
    assert got.shape == (2, FRAMES, *GRID[block], arm.feature_dim_of(block))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_stops_after_deepest_block_and_up_blocks_need_the_down_path(arms):
    for arm in arms:
        u = arm.unet
        video = clip(1, FRAMES)
        counter = CallCounter([*u.down_blocks, u.mid_block, *u.up_blocks, u.conv_out])
        arm.features(video, T, [1])
        assert counter.counts == [1, 0, 0, 0, 0, 0], arm.name
        arm.features(video, T, [4])   # an up block runs every down block and the mid block first
        assert counter.counts == [2, 1, 1, 1, 0, 0], arm.name
        counter.remove()


def test_features_at_their_own_grid_in_one_pass(arms):
    sd, _ = arms
    feats = sd.features(clip(1, 2), T, list(range(sd.num_blocks + 1)), seeds=torch.tensor([0]))
    assert {k: tuple(v.shape[2:]) for k, v in feats.items()} == {
        k: (*GRID[k], sd.feature_dim_of(k)) for k in GRID}
    assert [sd.feature_dim_of(k) for k in GRID] == [8, 8, 16, 16, 16, 8]
    assert sd.feature_block == 5 and sd.feature_dim == 8    # DIFT's up_ft_index 1


def test_noise_is_the_schedulers_own_and_log_snr_monotone(dirs, arms):
    z0 = torch.randn(2, 4, 3, 8, 8)
    seeds, t = torch.tensor([1, 2]), torch.tensor([0, 999])
    sched = diffusers.PNDMScheduler.from_pretrained(dirs[0] / "scheduler")
    for arm in arms:
        assert type(arm.scheduler).__name__ == "PNDMScheduler"
        torch.testing.assert_close(arm.add_noise(z0, t, seeds),
                                   sched.add_noise(z0, eval_noise(z0.shape, seeds), t))
        levels = [arm.noise_level(s) for s in range(0, 1000, 37)]
        assert all(a.log_snr > b.log_snr and a.walt_t < b.walt_t for a, b in zip(levels, levels[1:]))
    with pytest.raises(ValueError, match="outside"):
        arms[0].noise_level(1000)


def test_frame_conventions_of_the_two_arms(arms):
    sd, animatediff = arms
    video, seeds = clip(1, FRAMES, seed=5), torch.tensor([2])
    moved = video.clone()
    moved[:, 3] = 255 - moved[:, 3]
    for arm, frame0_changes in ((sd, False), (animatediff, True)):
        a, b = (arm.features(v, T, [3], seeds=seeds)[3] for v in (video, moved))
        assert (not torch.allclose(a[:, 0], b[:, 0], atol=1e-6)) == frame0_changes, arm.name
    image = video[:, :1]
    tiled = animatediff.features(image, T, [2], seeds=seeds)[2]
    torch.testing.assert_close(tiled, animatediff.features(
        repeat(image, "b 1 H W c -> b T H W c", T=FRAMES), T, [2], seeds=seeds)[2])
    assert sd.features(image, T, [2], seeds=seeds)[2].shape[1] == 1


def test_spatial_weights_identical_after_loading(arms):
    sd, animatediff = arms
    assert spatial_weight_mismatches(sd.unet, animatediff.unet) == []
    n_2d = len(sd.unet.state_dict())
    n_motion = sum("motion_modules" in k for k in animatediff.unet.state_dict())
    assert n_motion > 0 and len(animatediff.unet.state_dict()) == n_2d + n_motion
    with torch.no_grad():   # the check can fail: one changed 2-D tensor is named
        animatediff.unet.conv_in.bias.add_(1e-3)
    try:
        assert spatial_weight_mismatches(sd.unet, animatediff.unet) == ["conv_in.bias"]
    finally:
        with torch.no_grad():
            animatediff.unet.conv_in.bias.sub_(1e-3)


def test_describes_itself(arms):
    for arm, variant in zip(arms, ("image", "video")):
        assert isinstance(arm, Backbone)
        assert (arm.family, arm.variant, arm.num_blocks) == ("sd15-animatediff", variant, 5)
    assert arms[0].fingerprint != arms[1].fingerprint


def test_named_errors(dirs, arms, tmp_path):
    sd_dir, motion_dir = dirs
    with pytest.raises(ModelDirError, match="not a directory"):
        build_sd15(str(tmp_path / "nowhere"))
    with pytest.raises(ModelDirError, match="pipeline root"):
        build_sd15(str(sd_dir / "unet"))
    with pytest.raises(ModelDirError, match="UNet2DConditionModel.*expected.*MotionAdapter"):
        build_animatediff(str(sd_dir), str(sd_dir / "unet"))
    with pytest.raises(ClipShapeError, match="at most 8 frames"):
        arms[1].features(clip(1, 9), T, [1])
    with pytest.raises(ClipShapeError, match="nearest valid size is 16 x 32"):
        arms[0].features(torch.zeros(1, 1, 15, 33, 3, dtype=torch.uint8), T, [1])
