"""Wan adapter against the library's own pipeline and model, on tiny random weights saved in
the pipeline layout (CPU, float32, seconds)."""

import json
import math
import os
import sys

import pytest
import torch

pytest.importorskip("diffusers")

from backbones.base import Backbone
from backbones.hf_common import CallCounter, ClipShapeError, ModelDirError
from backbones.wan import build_wan
from walt.noise import eval_noise

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from video_dit_fixtures import (capture, make_wan, one_thread, uint8_clip,  # noqa: E402,F401
                                unit_range)

SHIFT, N = 3.0, 1000


def shifted_sigma(t: int) -> float:
    """Closed form of the shifted training table, counted from the clean end."""
    u = (t + 1) / N
    return SHIFT * u / (1 + (SHIFT - 1) * u)


@pytest.fixture(scope="module", params=["unipc", "flowmatch"])
def pipeline_dir(request, tmp_path_factory):
    return make_wan(tmp_path_factory.mktemp("wan"), scheduler=request.param)


@pytest.fixture(scope="module")
def backbone(pipeline_dir):
    return build_wan(pipeline_dir, device="cpu", text_len=24)


def reference_features(root, video, t, seeds, blocks):
    """The pipeline's own pieces loaded independently: VAE posterior mean normalised by
    latents_mean / latents_std, the closed-form flow-matching noising, encode_prompt(''), hooks on
    the unwrapped transformer called through its full forward with timestep 1000 sigma."""
    from diffusers import WanPipeline
    pipe = WanPipeline.from_pretrained(root, local_files_only=True)
    cfg = pipe.vae.config
    with torch.no_grad():
        z = pipe.vae.encode(unit_range(video)).latent_dist.mode()
        z0 = (z - torch.tensor(cfg.latents_mean).view(1, -1, 1, 1, 1)) / \
            torch.tensor(cfg.latents_std).view(1, -1, 1, 1, 1)
        sigma = shifted_sigma(t)
        zt = (1 - sigma) * z0 + sigma * eval_noise(z0.shape, seeds)
        text, _ = pipe.encode_prompt("", do_classifier_free_guidance=False, max_sequence_length=24)
        got = {}
        hooks = [capture(pipe.transformer.blocks, k, got) for k in blocks]
        pipe.transformer(hidden_states=zt, timestep=torch.full((len(video),), 1000 * sigma),
                         encoder_hidden_states=text.expand(len(video), -1, -1))
        for h in hooks:
            h.remove()
    return zt, got


def test_contract_and_features_equal_library_forward(backbone, pipeline_dir):
    assert isinstance(backbone, Backbone)
    assert (backbone.family, backbone.variant, backbone.num_blocks, backbone.feature_dim) == \
        ("wan", "video", 3, 32)
    video, seeds, t = uint8_clip(2, 9, 32, 32), torch.tensor([3, 7]), 700
    feats = backbone.features(video, t, [0, 1, 3], seeds=seeds)
    zt_ref, ref = reference_features(pipeline_dir, video, t, seeds, [0, 1, 3])
    for k in (0, 1, 3):
        assert feats[k].shape == (2, 3, 2, 2, 32) and feats[k].dtype == torch.float32
        torch.testing.assert_close(feats[k].flatten(1, 3), ref[k], rtol=1e-4, atol=1e-5)
    assert backbone.feature_spans(9).tolist() == [[0, 1], [1, 5], [5, 9]]   # causal VAE, 4x
    zt, _ = backbone.noised(backbone.latents(video), t, seeds)
    torch.testing.assert_close(zt, zt_ref, rtol=1e-5, atol=1e-5)


def test_no_block_past_the_deepest_runs(backbone):
    counter = CallCounter(list(backbone.blocks))
    try:
        backbone.features(uint8_clip(1, 5, 32, 32), 100, [2], seeds=torch.tensor([0]))
        assert counter.counts == [1, 1, 0]
    finally:
        counter.remove()


def test_noise_is_the_schedulers_and_log_snr_is_monotone(backbone):
    z0, seeds = torch.randn(2, 4, 3, 4, 4), torch.tensor([0, 1])
    eps = eval_noise(z0.shape, seeds)
    for t in (0, 400, 999):
        zt, _ = backbone.noised(z0, t, seeds)
        sigma = shifted_sigma(t)
        torch.testing.assert_close(zt, (1 - sigma) * z0 + sigma * eps)
        assert backbone.noise_level(t).native == pytest.approx(sigma, rel=1e-6)
    levels = [backbone.noise_level(t) for t in [*range(0, 999, 37), 999]]
    log_snr = [lv.log_snr for lv in levels]
    assert all(a > b for a, b in zip(log_snr, log_snr[1:]))          # more t = more noise
    assert log_snr[-1] == -math.inf and levels[-1].native == 1.0
    for lv in levels[:-1]:                                            # SNR = ((1 - s) / s)^2
        assert lv.log_snr == pytest.approx(2 * math.log((1 - lv.native) / lv.native))


def test_named_errors(backbone, pipeline_dir, tmp_path):
    with pytest.raises(ModelDirError, match="not a directory"):
        build_wan(tmp_path / "nowhere", device="cpu")
    wrong = tmp_path / "wrong"
    for sub in ("transformer", "vae", "scheduler", "text_encoder", "tokenizer"):
        (wrong / sub).mkdir(parents=True)
    (wrong / "transformer" / "config.json").write_text(
        json.dumps({"_class_name": "CogVideoXTransformer3DModel"}))
    with pytest.raises(ModelDirError, match="CogVideoXTransformer3DModel"):
        build_wan(wrong, device="cpu")
    with pytest.raises(ClipShapeError, match="nearest valid: 13"):
        backbone.features(uint8_clip(1, 12, 32, 32), 10, [1])
    with pytest.raises(ClipShapeError, match="width 44 .* nearest valid: 48"):
        backbone.features(uint8_clip(1, 9, 32, 44), 10, [1])
