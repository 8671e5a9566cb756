"""What WALTBackbone.features captures, checked against closed forms: block k is the residual
stream after transformer block k (0 = the embedding); the latents are noised as
sqrt(abar_t) z0 + sqrt(1 - abar_t) eps with each example's own t and seeded eps; I-WALT sees
every frame as an image of its own; the noise level and the fingerprint report every setting
that changes the features."""

import math

import pytest
import torch

from backbones.build import build_backbone
from backbones.walt import WALTBackbone, protocol, size_name
from walt.noise import NoiseSchedule, eval_noise
from walt.sizes import WALT_SIZES

KW = dict(size="tiny", tokenizer="tiny", image_size=16, num_frames=5, reuse=False)


def _video(b=2, T=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, T, 16, 16, 3), dtype=torch.uint8, generator=g)


def _noised(backbone, video, t, seeds):
    """z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps by hand, t: (b,) long, eps seeded per example."""
    z0 = backbone.encode(video)                                         # (b, z, t', h, w)
    eps = eval_noise(z0.shape, seeds)
    abar = backbone.schedule.alphas_cumprod[t].float().view(-1, 1, 1, 1, 1)
    return abar.sqrt() * z0 + (1 - abar).sqrt() * eps


@pytest.fixture(scope="module")
def v_walt():
    return build_backbone(**KW, variant="video")


def test_block_k_is_the_stream_after_transformer_block_k_and_0_the_embedding(v_walt):
    """Hooks on the transformer's own blocks: the input of block 1 is the embedding output,
    the output of block k is what block k captures; blocks past the deepest never run."""
    seen, ran = {}, []

    def embedding(module, args):                # hooks return None: they must not alter the pass
        seen[0] = args[0].clone()

    def after(k):
        def hook(module, args, out):
            seen[k] = out.clone()
            ran.append(k)
        return hook

    hooks = [v_walt.walt.blocks[0].register_forward_pre_hook(embedding)]
    hooks += [block.register_forward_hook(after(k))
              for k, block in enumerate(v_walt.walt.blocks, start=1)]
    try:
        feats = v_walt.features(_video(), 300, [3, 0, 2], seeds=torch.tensor([0, 1]))
    finally:
        for h in hooks:
            h.remove()
    assert sorted(feats) == [0, 2, 3] and ran == [1, 2, 3]
    for k, f in feats.items():
        torch.testing.assert_close(f, seen[k], rtol=0, atol=0)


@pytest.mark.parametrize("t", [0, 450, 999, (120, 870)])
def test_v_walt_features_are_the_pass_on_sqrt_abar_noised_latents(v_walt, t):
    video, seeds = _video(), torch.tensor([7, 8])
    tt = torch.as_tensor(t).expand(2) if isinstance(t, int) else torch.tensor(t)
    feats = v_walt.features(video, t if isinstance(t, int) else tt, [1, 4], seeds=seeds)
    want = v_walt.walt.forward_features(_noised(v_walt, video, tt, seeds), tt, [1, 4])
    for k in (1, 4):
        torch.testing.assert_close(feats[k], want[k], rtol=1e-5, atol=1e-5)
    if not isinstance(t, int):  # each example keeps its own t (not the first one's)
        alone = v_walt.features(video[1:], t[1], [4], seeds=seeds[1:])[4]
        torch.testing.assert_close(feats[4][1:], alone, rtol=1e-5, atol=1e-5)


def test_features_change_with_t_and_t0_is_nearly_clean(v_walt):
    video, seeds = _video(), torch.tensor([0, 1])
    near = v_walt.features(video, 0, [2], seeds=seeds)[2]
    other_noise = v_walt.features(video, 0, [2], seeds=seeds + 100)[2]
    far = v_walt.features(video, 999, [2], seeds=seeds)[2]
    # abar_0 = 1 - 1e-4: the noise barely matters at t = 0 and decides everything at t = 999
    assert (near - other_noise).abs().max() < 0.05 * (near - far).abs().max()


@pytest.mark.parametrize("route, frames", [("frames", 5), ("clip", 2)])
def test_i_walt_sees_each_latent_frame_as_an_image_of_its_own(route, frames):
    """I-WALT: feature frame f is the one-frame pass (frame-0 temporal embedding, as in its
    pretraining) on latent frame f, on either route (paper Sec. 3.3)."""
    bb = build_backbone(**KW, variant="image", video_route=route)
    video, seeds, t = _video(T=5), torch.tensor([3, 4]), torch.tensor([200, 600])
    feats = bb.features(video, t, [2], seeds=seeds)[2]                 # (b, t', h, w, D)
    z_t = _noised(bb, video, t, seeds)
    assert feats.shape[1] == z_t.shape[2] == frames
    for f in range(frames):
        one = bb.walt.forward_features(z_t[:, :, f:f + 1], t, [2],
                                       independent_frames=torch.ones(2, dtype=torch.bool))[2]
        torch.testing.assert_close(feats[:, f:f + 1], one, rtol=1e-5, atol=1e-5)


def test_a_bf16_backbone_returns_float32_features_close_to_float32():
    video, seeds = _video(), torch.tensor([0, 1])
    full = build_backbone(**KW).features(video, 300, [2], seeds=seeds)[2]
    half = build_backbone(**KW, dtype="bfloat16").features(video, 300, [2], seeds=seeds)[2]
    assert half.dtype == torch.float32
    assert (half - full).abs().mean() < 0.1 * full.abs().mean()


def test_noise_level_reports_t_the_log_snr_and_the_shared_axis():
    linear = build_backbone(**KW)
    abar = linear.schedule.alphas_cumprod
    for t in (0, 1, 500, 998):
        level = linear.noise_level(t)
        assert level.native == t and level.walt_t == t
        assert level.log_snr == pytest.approx(math.log(abar[t] / (1 - abar[t])), rel=1e-9)
    assert linear.noise_level(999).log_snr == -math.inf         # zero terminal SNR
    for bad in (-1, 1000):
        with pytest.raises(ValueError, match=f"timestep {bad} is outside \\[0, 1000\\)"):
            linear.noise_level(bad)
    # Another schedule maps through log-SNR: walt_t is the WALT timestep with the same SNR.
    cosine = build_backbone(**KW, schedule="cosine")
    levels = [cosine.noise_level(t) for t in (10, 300, 600)]
    walt_log_snr = torch.log(abar / (1 - abar))
    for level in levels:
        lo = math.floor(level.walt_t)
        assert level.walt_t != level.native
        assert float(walt_log_snr[lo]) >= level.log_snr >= float(walt_log_snr[lo + 1])
    assert [lv.walt_t for lv in levels] == sorted(lv.walt_t for lv in levels)


def _plain(**over):
    """A WALTBackbone on the tiny modules of seed 0, every setting overridable."""
    built = build_backbone(**KW)
    kw = dict(tokenizer=built.tokenizer, walt=built.walt, schedule=NoiseSchedule(),
              repeat_images=None, num_frames=5, weights_id="w0", video_route=None)
    return WALTBackbone(**{**kw, **over})


@pytest.mark.parametrize("change", [dict(weights_id="w1"), dict(schedule=NoiseSchedule("cosine")),
                                    dict(repeat_images=False), dict(num_frames=9),
                                    dict(video_route="frames")])
def test_every_setting_that_changes_features_changes_the_fingerprint(change):
    assert _plain(**change).fingerprint != _plain().fingerprint
    assert _plain(compile="walt").fingerprint == _plain().fingerprint
    assert len(_plain().fingerprint) == 16


def test_the_fingerprint_of_a_fixed_configuration_does_not_drift():
    """Every user's feature cache is keyed by this value: a change (a renamed field, another
    serialisation, another length) silently orphans all cached activations. If the change is
    deliberate (the features change too), update the value and say so in the release notes."""
    assert _plain().fingerprint == "5cdfab9ab50c1b3d"
    assert build_backbone(**KW).fingerprint == "45f566e72adfe252"


def test_without_a_weights_id_the_fingerprint_hashes_both_modules_tensors():
    built = build_backbone(**KW)
    fresh = lambda: WALTBackbone(built.tokenizer, built.walt, num_frames=5).fingerprint  # noqa: E731
    base = fresh()
    assert fresh() == base
    for part in ("tokenizer", "walt"):
        weight = next(getattr(built, part).parameters())
        kept = weight.detach().clone()
        with torch.no_grad():
            weight.view(-1)[0] += 1e-3
        assert fresh() != base, f"a changed {part} weight is not seen"
        with torch.no_grad():
            weight.copy_(kept)
    assert fresh() == base


def test_protocol_defaults_follow_the_variant_and_settings_win():
    assert protocol("image") == (False, "frames") and protocol("video") == (True, "clip")
    assert protocol("image", True, "clip") == (True, "clip")
    assert protocol("video", False, "frames") == (False, "frames")
    assert protocol("video", 0) == (False, "clip")


def test_size_names_and_unnamed_shapes():
    for name, row in WALT_SIZES.items():
        assert size_name(dict(row)) == name
    assert size_name({"width": 100, "depth": 3, "num_heads": 4}) == "d100-L3"
    assert build_backbone(**KW).size == "tiny"


def test_constructor_names_bad_settings_and_compile_parts():
    with pytest.raises(ValueError, match="video_route='tubes' is not one of \\('clip', 'frames'\\)"):
        _plain(video_route="tubes")
    with pytest.raises(ValueError, match="compile='yes' is not one of"):
        _plain(compile="yes")
    want = {False: set(), True: {"walt", "tokenizer"}, "all": {"walt", "tokenizer"},
            "walt": {"walt"}, "tokenizer": {"tokenizer"}}
    for mode, parts in want.items():
        assert _plain(compile=mode).compiled_parts == parts
    assert _plain(compile="walt", compile_mode="max-autotune").compile_mode == "max-autotune"


def test_a_plain_walt_backbone_runs_the_papers_17_frame_protocol_eagerly():
    """Constructed without settings: 17-frame clips (a tiled image covers 5 latent frames),
    the linear schedule, no compilation."""
    built = build_backbone(**KW)
    plain = WALTBackbone(built.tokenizer, built.walt)
    assert plain.feature_spans(1).tolist() == [[0, 1], [1, 5], [5, 9], [9, 13], [13, 17]]
    assert plain.compiled_parts == frozenset() and plain.schedule.config == NoiseSchedule().config
