"""The Backbone contract on WALT: capture, reproducible noise, checkpoints, gin, block specs."""

from pathlib import Path

import pytest
import torch

from backbones.base import Backbone, resolve_blocks
from backbones.build import build_backbone
from walt.checkpoint import CheckpointError, file_fingerprint, load_walt, save_module
from walt.transformer import WALT

KW = dict(size="tiny", tokenizer="tiny", image_size=16, num_frames=5)


@pytest.fixture
def backbone():
    return build_backbone(**KW)


def _video(b=2, T=5, H=16):
    return torch.randint(0, 256, (b, T, H, H, 3), dtype=torch.uint8)


def test_is_a_backbone_with_the_contract_shapes(backbone):
    assert isinstance(backbone, Backbone)
    feats = backbone.features(_video(), 200, [0, 2, 4], seeds=torch.tensor([0, 1]))
    assert sorted(feats) == [0, 2, 4]
    for f in feats.values():
        assert f.shape == (2, 2, 2, 2, backbone.feature_dim) and f.dtype == torch.float32
    assert backbone.num_blocks == 4 and backbone.name.startswith("V-WALT")


def test_one_transformer_pass_per_features_call(backbone):
    calls = []
    for block in backbone.walt.blocks:
        block.register_forward_pre_hook(lambda m, a: calls.append(1))
    backbone.features(_video(), 100, [0, 1, 2, 3, 4], seeds=torch.tensor([0, 1]))
    assert len(calls) == backbone.num_blocks


def test_eval_noise_makes_features_reproducible(backbone):
    video, seeds = _video(), torch.tensor([3, 4])
    a = backbone.features(video, 600, [3], seeds=seeds)[3]
    b = backbone.features(video, 600, [3], seeds=seeds)[3]
    c = backbone.features(video[1:], 600, [3], seeds=seeds[1:])[3]     # batch-independent
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a[1:], c, rtol=1e-5, atol=1e-5)
    fresh = backbone.features(video, 600, [3])[3]
    assert not torch.allclose(a, fresh)


@pytest.mark.parametrize("repeat, frames", [(True, 2), (False, 1)])
def test_images_are_tiled_or_encoded_alone(repeat, frames):
    bb = build_backbone(**KW, repeat_images=repeat)
    feats = bb.features(_video(T=1), 0, [2], seeds=torch.tensor([0, 1]))
    assert feats[2].shape[1] == frames


def test_resolve_blocks():
    assert resolve_blocks([0, 0.5, "1.0", "2", 2], 24) == [0, 2, 12, 24]
    assert resolve_blocks(0.66, 24) == [16]
    for bad in (25, -1, 1.5, True):
        with pytest.raises(ValueError):
            resolve_blocks(bad, 24)


def test_fingerprint_is_stable_and_tracks_variant_and_seed():
    a, b = build_backbone(**KW), build_backbone(**KW)
    assert a.fingerprint == b.fingerprint
    assert build_backbone(**KW, seed=1).fingerprint != a.fingerprint
    fp = a.fingerprint
    a.walt.variant = "image"
    assert a.fingerprint != fp
    torch.testing.assert_close(a.walt.pos_spatial, build_backbone(**KW).walt.pos_spatial)


def test_save_load_gives_identical_features(backbone, tmp_path):
    tok_path = save_module(backbone.tokenizer, tmp_path / "tok.safetensors")
    walt_path = save_module(backbone.walt, tmp_path / "walt.safetensors", meta={"steps": 0})
    assert (tmp_path / "walt.json").is_file() and len(file_fingerprint(walt_path)) == 64
    loaded = build_backbone(**KW, tokenizer_checkpoint=str(tok_path),
                            walt_checkpoint=str(walt_path), seed=123)
    video, seeds = _video(), torch.tensor([5, 6])
    want = backbone.features(video, 200, [1, 4], seeds=seeds)
    got = loaded.features(video, 200, [1, 4], seeds=seeds)
    for l in want:
        torch.testing.assert_close(got[l], want[l], rtol=0, atol=0)
    assert load_walt(walt_path, variant="image").variant == "image"
    assert not list(Path(tmp_path).glob("*.tmp"))


def test_wrong_shape_load_names_the_tensor_and_both_shapes(tmp_path):
    path = save_module(WALT.from_size("tiny", width=96, num_heads=3), tmp_path / "w.safetensors")
    model = WALT.from_size("tiny")
    from safetensors.torch import load_file
    from walt.checkpoint import load_state_checked
    with pytest.raises(CheckpointError, match=r"'pos_spatial' has shape \(8, 8, 96\) in the "
                                              r"checkpoint but \(8, 8, 192\) in the model"):
        load_state_checked(model, load_file(str(path)), str(path))


def test_checkpoint_with_a_wrong_config_fails_on_load(tmp_path):
    import json
    path = save_module(WALT.from_size("tiny"), tmp_path / "w.safetensors")
    side = json.loads((tmp_path / "w.json").read_text())
    side["config"]["latent_shape"] = [5, 16, 16]
    (tmp_path / "w.json").write_text(json.dumps(side))
    with pytest.raises(CheckpointError, match=r"'pos_spatial' has shape \(8, 8, 192\) in the "
                                              r"checkpoint but \(16, 16, 192\)"):
        load_walt(path)


def test_bf16_checkpoint_loads_into_float32(tmp_path):
    model = WALT.from_size("tiny", zero_init_gates=False)
    path = save_module(model, tmp_path / "w.safetensors", dtype=torch.bfloat16)
    loaded = load_walt(path)
    assert loaded.patch_embed.weight.dtype == torch.float32
    torch.testing.assert_close(loaded.patch_embed.weight,
                               model.patch_embed.weight.to(torch.bfloat16).float())


@pytest.mark.parametrize("name", ["tiny", "small", "284m", "724m", "1p9b"])
def test_backbone_gin_files_parse_and_bind(name):
    import gin
    import runners.configurables  # noqa: F401
    root = Path(__file__).resolve().parents[2] / "gin"
    gin.clear_config()
    gin.add_config_file_search_path(str(root))
    gin.parse_config_file(str(root / "backbones" / f"{name}.gin"))
    gin.parse_config("VARIANT = 'image'")
    gin.parse_config("Backbone.size = %BACKBONE_SIZE")
    bindings = gin.config_str()
    assert f"BACKBONE_SIZE = '{name}'" in bindings and "VARIANT = 'image'" in bindings
    gin.clear_config()


def test_gin_builds_the_tiny_backbone():
    import gin
    import runners.configurables  # noqa: F401
    root = Path(__file__).resolve().parents[2] / "gin"
    gin.clear_config()
    gin.add_config_file_search_path(str(root))
    gin.parse_config_file(str(root / "backbones" / "tiny.gin"))
    gin.parse_config(["IMAGE_SIZE = 16", "NUM_FRAMES = 5", "VARIANT = 'image'",
                      "Backbone.device = 'cpu'"])
    bb = gin.get_configurable("Backbone")()
    gin.clear_config()
    assert bb.walt.variant == "image" and bb.feature_dim == 192
