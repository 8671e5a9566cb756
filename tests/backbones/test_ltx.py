"""LTX-Video adapter against the library's own pipeline and model, on tiny random weights saved
in the pipeline layout (CPU, float32, seconds)."""

import json
import math
import os
import sys

import pytest
import torch

pytest.importorskip("diffusers")

from backbones.base import Backbone
from backbones.hf_common import CallCounter, ClipShapeError, ModelDirError
from backbones.ltx import build_ltx_video
from walt.noise import eval_noise

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from video_dit_fixtures import (capture, make_ltx, one_thread, uint8_clip,  # noqa: E402,F401
                                unit_range)


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    return make_ltx(tmp_path_factory.mktemp("ltx"))


@pytest.fixture(scope="module")
def backbone(pipeline_dir):
    return build_ltx_video(pipeline_dir, device="cpu", text_len=16)


def reference_features(root, video, t, seeds, blocks):
    """The pipeline's own pieces loaded independently: _normalize_latents of the VAE posterior
    mean, unshifted flow-matching noise sigma = (t + 1) / 1000, _pack_latents, encode_prompt('')
    with its mask, the pipeline's rope scale, hooks on the unwrapped transformer's full forward."""
    from diffusers import LTXPipeline
    pipe = LTXPipeline.from_pretrained(root, local_files_only=True)
    with torch.no_grad():
        z = pipe.vae.encode(unit_range(video)).latent_dist.mode()
        z0 = pipe._normalize_latents(z, pipe.vae.latents_mean, pipe.vae.latents_std,
                                     pipe.vae.config.scaling_factor)
        sigma = (t + 1) / 1000
        zt = (1 - sigma) * z0 + sigma * eval_noise(z0.shape, seeds)
        text, mask, _, _ = pipe.encode_prompt("", do_classifier_free_guidance=False,
                                              max_sequence_length=16)
        b, _, nt, nh, nw = zt.shape
        got = {}
        hooks = [capture(pipe.transformer.transformer_blocks, k, got) for k in blocks]
        pipe.transformer(
            hidden_states=pipe._pack_latents(zt, 1, 1),
            encoder_hidden_states=text.expand(b, -1, -1),
            timestep=torch.full((b,), 1000 * sigma), encoder_attention_mask=mask.expand(b, -1),
            num_frames=nt, height=nh, width=nw,
            rope_interpolation_scale=(pipe.vae_temporal_compression_ratio / 25,
                                      pipe.vae_spatial_compression_ratio,
                                      pipe.vae_spatial_compression_ratio))
        for h in hooks:
            h.remove()
    return zt, got


def test_contract_and_features_equal_library_forward(backbone, pipeline_dir):
    assert isinstance(backbone, Backbone)
    assert (backbone.family, backbone.variant, backbone.num_blocks, backbone.feature_dim) == \
        ("ltx_video", "video", 3, 32)
    video, seeds, t = uint8_clip(2, 9, 32, 32), torch.tensor([3, 7]), 400
    feats = backbone.features(video, t, [0, 2, 3], seeds=seeds)
    zt_ref, ref = reference_features(pipeline_dir, video, t, seeds, [0, 2, 3])
    for k in (0, 2, 3):   # 9 frames -> 3 latent frames; 32 px -> 2 latent px (16x VAE)
        assert feats[k].shape == (2, 3, 2, 2, 32) and feats[k].dtype == torch.float32
        torch.testing.assert_close(feats[k].flatten(1, 3), ref[k], rtol=1e-4, atol=1e-5)
    assert backbone.feature_spans(9).tolist() == [[0, 1], [1, 5], [5, 9]]   # causal VAE, 4x
    zt, _ = backbone.noised(backbone.latents(video), t, seeds)
    torch.testing.assert_close(zt, zt_ref, rtol=1e-5, atol=1e-5)


def test_no_block_past_the_deepest_runs(backbone):
    counter = CallCounter(list(backbone.blocks))
    try:
        backbone.features(uint8_clip(1, 5, 32, 32), 100, [1], seeds=torch.tensor([0]))
        assert counter.counts == [1, 0, 0]
    finally:
        counter.remove()


def test_noise_is_the_schedulers_and_log_snr_is_monotone(backbone):
    z0, seeds = torch.randn(2, 8, 3, 2, 2), torch.tensor([0, 1])
    eps = eval_noise(z0.shape, seeds)
    for t in (0, 400, 999):
        zt, _ = backbone.noised(z0, t, seeds)
        sigma = (t + 1) / 1000
        torch.testing.assert_close(zt, (1 - sigma) * z0 + sigma * eps)
    log_snr = [backbone.noise_level(t).log_snr for t in [*range(0, 999, 37), 999]]
    assert all(a > b for a, b in zip(log_snr, log_snr[1:])) and log_snr[-1] == -math.inf


def test_named_errors(backbone, tmp_path):
    wrong = tmp_path / "wrong"
    for sub in ("transformer", "vae", "scheduler", "text_encoder", "tokenizer"):
        (wrong / sub).mkdir(parents=True)
    (wrong / "transformer" / "config.json").write_text(
        json.dumps({"_class_name": "WanTransformer3DModel"}))
    with pytest.raises(ModelDirError, match="WanTransformer3DModel"):
        build_ltx_video(wrong, device="cpu")
    with pytest.raises(ClipShapeError, match="nearest valid: 9"):   # 4k + 1 for this tiny VAE
        backbone.features(uint8_clip(1, 10, 32, 32), 10, [1])
    with pytest.raises(ClipShapeError, match="height 24 .* nearest valid: 32"):
        backbone.features(uint8_clip(1, 9, 24, 32), 10, [1])
