"""CogVideoX adapter against the library's own pipeline and model, on tiny random weights saved
in the pipeline layout (CPU, float32, seconds)."""

import json
import math
import os
import sys

import pytest
import torch

pytest.importorskip("diffusers")

from backbones.base import Backbone
from backbones.cogvideox import build_cogvideox
from backbones.hf_common import CallCounter, ClipShapeError, ModelDirError
from walt.noise import eval_noise

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from video_dit_fixtures import (capture, make_cogvideox, one_thread, uint8_clip,  # noqa: E402,F401
                                unit_range)


@pytest.fixture(scope="module", params=[True, False], ids=["rope-5b", "sincos-2b"])
def pipeline_dir(request, tmp_path_factory):
    torch.manual_seed(0)
    return make_cogvideox(tmp_path_factory.mktemp("cogvideox"), rope=request.param)


@pytest.fixture(scope="module")
def backbone(pipeline_dir):
    return build_cogvideox(pipeline_dir, device="cpu")


def reference_features(root, video, t, seeds, blocks):
    """The pipeline's own pieces, loaded independently: VAE posterior mean x scaling_factor,
    scheduler.add_noise, encode_prompt(''), the pipeline's rotary embeddings, and hooks on the
    unwrapped transformer called through its full forward."""
    from diffusers import CogVideoXPipeline
    pipe = CogVideoXPipeline.from_pretrained(root, local_files_only=True)
    with torch.no_grad():
        z0 = pipe.vae.encode(unit_range(video)).latent_dist.mode() * pipe.vae.config.scaling_factor
        eps = eval_noise(z0.shape, seeds)
        zt = pipe.scheduler.add_noise(z0, eps, torch.full((len(video),), t))
        length = pipe.transformer.config.max_text_seq_length
        text, _ = pipe.encode_prompt("", do_classifier_free_guidance=False,
                                     max_sequence_length=length)
        _, _, frames, height, width = video.permute(0, 4, 1, 2, 3).shape
        rope = (pipe._prepare_rotary_positional_embeddings(height, width, zt.shape[2], "cpu")
                if pipe.transformer.config.use_rotary_positional_embeddings else None)
        got = {}
        hooks = [capture(pipe.transformer.transformer_blocks, k, got) for k in blocks]
        pipe.transformer(hidden_states=zt.permute(0, 2, 1, 3, 4),
                         encoder_hidden_states=text.expand(len(video), -1, -1),
                         timestep=torch.full((len(video),), t), image_rotary_emb=rope)
        for h in hooks:
            h.remove()
    return zt, got


def test_contract_and_features_equal_library_forward(backbone, pipeline_dir):
    assert isinstance(backbone, Backbone)
    assert (backbone.family, backbone.variant, backbone.num_blocks, backbone.feature_dim) == \
        ("cogvideox", "video", 3, 32)
    video, seeds, t = uint8_clip(2, 9, 32, 32), torch.tensor([3, 7]), 600
    feats = backbone.features(video, t, [0, 2, 3], seeds=seeds)
    zt_ref, ref = reference_features(pipeline_dir, video, t, seeds, [0, 2, 3])
    # 9 frames -> 3 latent frames; 32 px -> 4 latent px -> 2 patches
    for k in (0, 2, 3):
        assert feats[k].shape == (2, 3, 2, 2, 32) and feats[k].dtype == torch.float32
        torch.testing.assert_close(feats[k].flatten(1, 3), ref[k], rtol=1e-4, atol=1e-5)
    assert backbone.feature_spans(9).tolist() == [[0, 1], [1, 5], [5, 9]]   # causal VAE, 4x
    # the noised latents are the scheduler's own add_noise of the VAE latents
    zt, _ = backbone.noised(backbone.latents(video), t, seeds)
    torch.testing.assert_close(zt, zt_ref, rtol=1e-5, atol=1e-6)


def test_no_block_past_the_deepest_runs(backbone):
    counter = CallCounter(list(backbone.blocks))
    try:
        backbone.features(uint8_clip(1, 5, 32, 32), 100, [1], seeds=torch.tensor([0]))
        assert counter.counts == [1, 0, 0]
        backbone.features(uint8_clip(1, 5, 32, 32), 100, [0], seeds=torch.tensor([0]))
        assert counter.counts == [1, 0, 0]   # block 0 = embedding output: no block runs
    finally:
        counter.remove()


def test_noise_is_the_schedulers_and_log_snr_is_monotone(backbone):
    sched = backbone.scheduler
    z0 = torch.randn(2, 4, 3, 4, 4)
    for t in (0, 250, 999):
        zt, _ = backbone.noised(z0, t, seeds=torch.tensor([0, 1]))
        eps = eval_noise(z0.shape, torch.tensor([0, 1]))
        abar = sched.alphas_cumprod[t]
        torch.testing.assert_close(zt, abar.sqrt() * z0 + (1 - abar).sqrt() * eps)
    levels = [backbone.noise_level(t) for t in [*range(0, 999, 37), 999]]
    log_snr = [lv.log_snr for lv in levels]
    assert all(a > b for a, b in zip(log_snr, log_snr[1:]))          # more t = more noise
    assert levels[-1].log_snr == -math.inf and levels[-1].walt_t == 999.0   # zero terminal SNR
    assert all(a.walt_t <= b.walt_t for a, b in zip(levels, levels[1:]))


def test_named_errors(backbone, pipeline_dir, tmp_path):
    with pytest.raises(ModelDirError, match="not a directory"):
        build_cogvideox(tmp_path / "nowhere", device="cpu")
    with pytest.raises(ModelDirError, match="pipeline root"):
        build_cogvideox(pipeline_dir / "transformer", device="cpu")
    wrong = tmp_path / "wrong"
    for sub in ("transformer", "vae", "scheduler", "text_encoder", "tokenizer"):
        (wrong / sub).mkdir(parents=True)
    (wrong / "transformer" / "config.json").write_text(
        json.dumps({"_class_name": "WanTransformer3DModel"}))
    with pytest.raises(ModelDirError, match="WanTransformer3DModel"):
        build_cogvideox(wrong, device="cpu")
    with pytest.raises(ClipShapeError, match="nearest valid: 9"):
        backbone.features(uint8_clip(1, 8, 32, 32), 10, [1])
    with pytest.raises(ClipShapeError, match="nearest valid: 32"):
        backbone.features(uint8_clip(1, 9, 30, 32), 10, [1])
    with pytest.raises(ValueError, match=r"outside \[0, 999\]"):
        backbone.features(uint8_clip(1, 9, 32, 32), 1000, [1])


def test_fingerprint_is_stable_across_loads(backbone, pipeline_dir):
    assert build_cogvideox(pipeline_dir, device="cpu").fingerprint == backbone.fingerprint


def test_cogvideox_1p5_layout_two_latent_frames_per_token(tmp_path):
    """patch_size_t = 2: 13 frames -> 4 latent frames -> 2 token frames; the rope is the
    pipeline's 'slice' grid; 9 frames (3 latent frames) cannot be patched in time."""
    root = make_cogvideox(tmp_path / "cog15", rope=True, patch_size_t=2)
    backbone = build_cogvideox(root, device="cpu")
    video, seeds = uint8_clip(1, 13, 32, 32), torch.tensor([5])
    feats = backbone.features(video, 300, [1, 3], seeds=seeds)
    _, ref = reference_features(root, video, 300, seeds, [1, 3])
    for k in (1, 3):
        assert feats[k].shape == (1, 2, 2, 2, 32)
        torch.testing.assert_close(feats[k].flatten(1, 3), ref[k], rtol=1e-4, atol=1e-5)
    assert backbone.feature_spans(13).tolist() == [[0, 5], [5, 13]]  # 2 latents per token frame
    with pytest.raises(ClipShapeError, match=r"8k \+ 5 frames"):
        backbone.features(uint8_clip(1, 9, 32, 32), 10, [1])
