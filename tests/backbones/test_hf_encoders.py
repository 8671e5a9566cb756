"""The transformers encoders (DINOv2 with and without registers, SigLIP, VideoMAE, V-JEPA 2) as
backbones, each built from a tiny random config of the REAL library class, saved with
save_pretrained (plus the processor config the adapter reads), and loaded back through its
builder. One parametrized file: the checks are the same for the four, only the specs differ.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from backbones.base import Backbone  # noqa: E402
from backbones.dinov2 import build_dinov2  # noqa: E402
from backbones.hf_common import CallCounter, ClipShapeError, ModelDirError  # noqa: E402
from backbones.siglip import build_siglip  # noqa: E402
from backbones.videomae import build_videomae  # noqa: E402
from backbones.vjepa2 import build_vjepa2  # noqa: E402

IMNET = dict(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
LAYERS = 3


def _dinov2(registers: int):
    shape = dict(hidden_size=32, num_hidden_layers=LAYERS, num_attention_heads=2, image_size=28,
                 patch_size=14)
    if registers:
        cfg = transformers.Dinov2WithRegistersConfig(num_register_tokens=registers, **shape)
        cls = transformers.Dinov2WithRegistersModel
    else:
        cfg, cls = transformers.Dinov2Config(**shape), transformers.Dinov2Model
    proc = transformers.BitImageProcessor(do_resize=False, do_center_crop=False, **IMNET)
    return cls(cfg), proc


# name -> make (model, processor), builder + its kwargs, clip (T, H, W), the library forward's
# pixel argument and other kwargs, the embedding module and layer list (hook points), the
# expected token grid (t', h', w') and the number of leading CLS / register tokens
SPECS = {
    "dinov2": dict(
        make=lambda: _dinov2(0), build=build_dinov2, kwargs={}, clip=(3, 28, 28),
        pixels_arg="pixel_values", call={}, embed="embeddings", layers="encoder.layer",
        family="dinov2", variant="image", grid=(3, 2, 2), prefix=1),
    "dinov2_reg": dict(
        make=lambda: _dinov2(2), build=build_dinov2, kwargs={}, clip=(2, 28, 28),
        pixels_arg="pixel_values", call={}, embed="embeddings", layers="encoder.layer",
        family="dinov2", variant="image", grid=(2, 2, 2), prefix=3),
    "siglip": dict(
        make=lambda: (transformers.SiglipVisionModel(transformers.SiglipVisionConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=LAYERS, num_attention_heads=2,
            image_size=32, patch_size=16)),
            transformers.SiglipImageProcessor(do_resize=False)),
        build=build_siglip, kwargs={}, clip=(2, 32, 32), pixels_arg="pixel_values",
        call={"interpolate_pos_encoding": False}, embed="embeddings", layers="encoder.layers",
        family="siglip", variant="image", grid=(2, 2, 2), prefix=0),
    "videomae": dict(
        make=lambda: (transformers.VideoMAEModel(transformers.VideoMAEConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=LAYERS, num_attention_heads=2,
            image_size=32, patch_size=16, num_frames=4, tubelet_size=2)),
            transformers.VideoMAEImageProcessor(do_resize=False, do_center_crop=False, **IMNET)),
        build=build_videomae, kwargs={}, clip=(4, 32, 32), pixels_arg="pixel_values",
        call={}, embed="embeddings", layers="encoder.layer",
        family="videomae", variant="video", grid=(2, 2, 2), prefix=0),
    "vjepa2": dict(
        make=lambda: (transformers.VJEPA2Model(transformers.VJEPA2Config(
            hidden_size=48, num_hidden_layers=LAYERS, num_attention_heads=2, crop_size=32,
            patch_size=16, frames_per_clip=4, tubelet_size=2, pred_hidden_size=24,
            pred_num_hidden_layers=1, pred_num_attention_heads=2, num_pooler_layers=1)),
            transformers.VJEPA2VideoProcessor(do_resize=False, do_center_crop=False)),
        build=build_vjepa2, kwargs={}, clip=(6, 32, 32), pixels_arg="pixel_values_videos",
        call={"skip_predictor": True}, embed="encoder.embeddings", layers="encoder.layer",
        family="vjepa2", variant="video", grid=(3, 2, 2), prefix=0),
}


def _get(module, path: str):
    for part in path.split("."):
        module = getattr(module, part)
    return module


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """name -> directory holding the tiny model and its processor config."""
    torch.manual_seed(0)
    out = {}
    for name, spec in SPECS.items():
        model, proc = spec["make"]()
        d = tmp_path_factory.mktemp(name)
        model.save_pretrained(d)
        proc.save_pretrained(d)
        out[name] = d
    return out


def _clip(spec, b=2, seed=0, frames=None):
    T, H, W = spec["clip"]
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, frames or T, H, W, 3), generator=g, dtype=torch.uint8)


def _backbone(name, saved, **kwargs):
    spec = SPECS[name]
    return spec["build"](saved[name], **{"resolution": None, "device": "cpu", "dtype": "float32",
                                         "reuse": False, **spec["kwargs"], **kwargs})


def _library_blocks(backbone, spec, pixels):
    """{block: tokens} from forward hooks on the embedding and every layer of the library model,
    called through its own forward; also returns its hidden_states."""
    model = backbone.model
    seen, handles = {}, []

    def keep(i):
        def hook(module, args, output):
            seen[i] = output[0] if isinstance(output, tuple) else output
        return hook
    handles.append(_get(model, spec["embed"]).register_forward_hook(keep(0)))
    for i, layer in enumerate(_get(model, spec["layers"]), start=1):
        handles.append(layer.register_forward_hook(keep(i)))
    with torch.no_grad():
        out = model(**{spec["pixels_arg"]: pixels}, output_hidden_states=True, **spec["call"])
    for h in handles:
        h.remove()
    return seen, out.hidden_states


@pytest.mark.parametrize("name", SPECS)
def test_blocks_equal_library_forward(name, saved):
    spec = SPECS[name]
    bb = _backbone(name, saved)
    video = _clip(spec)
    feats = bb.features(video, 0, list(range(LAYERS + 1)))
    hooked, hidden_states = _library_blocks(bb, spec, bb.preprocess(video))
    b, (t, h, w) = video.shape[0], spec["grid"]
    for i in range(LAYERS + 1):
        assert feats[i].shape == (b, t, h, w, bb.feature_dim) and feats[i].dtype == torch.float32
        assert torch.equal(hooked[i], hidden_states[i])         # hooks = library's hidden_states
        # the library's tokens, extra tokens dropped, in the grid order the adapter claims
        # (b*T, h*w, D) for an image encoder and (b, t*h*w, D) for a video encoder both read
        # as (b, t, h, w, D) in row-major order
        ref = hooked[i][:, spec["prefix"]:].reshape(b, t, h, w, -1)
        torch.testing.assert_close(feats[i], ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", SPECS)
def test_no_layer_past_the_deepest_runs(name, saved):
    bb = _backbone(name, saved)
    counter = CallCounter(list(bb.layers))
    feats = bb.features(_clip(SPECS[name]), 0, [0, 1])
    counter.remove()
    assert sorted(feats) == [0, 1] and counter.counts == [1, 0, 0]
    counter = CallCounter(list(bb.layers))
    bb.features(_clip(SPECS[name]), 0, [0])
    counter.remove()
    assert counter.counts == [0, 0, 0]                     # block 0 = embedding only


@pytest.mark.parametrize("name", SPECS)
def test_no_noise_axis(name, saved):
    bb = _backbone(name, saved)
    video = _clip(SPECS[name])
    assert bb.noise_level(500) is None
    a = bb.features(video, 0, [2])[2]
    b = bb.features(video, 999, [2], seeds=torch.tensor([3, 4]))[2]
    assert torch.equal(a, b)                                # t and seeds are ignored


@pytest.mark.parametrize("name", SPECS)
def test_preprocess_equals_the_models_processor(name, saved):
    """Normalisation and layout equal the checkpoint's own processor (no resize at None)."""
    spec = SPECS[name]
    bb = _backbone(name, saved)
    video = _clip(spec, b=1)
    frames = list(video[0].permute(0, 3, 1, 2).numpy())               # T x (3, H, W) uint8
    proc = transformers.AutoProcessor.from_pretrained(saved[name], local_files_only=True) \
        if name == "vjepa2" else transformers.AutoImageProcessor.from_pretrained(
            saved[name], local_files_only=True)
    if spec["variant"] == "image":
        ref = proc(images=frames, return_tensors="pt")["pixel_values"]
    elif name == "vjepa2":
        ref = proc(videos=[torch.from_numpy(np.stack(frames))], return_tensors="pt")[
            "pixel_values_videos"]
    else:
        ref = proc([frames], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(bb.preprocess(video), ref.float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", SPECS)
def test_backbone_contract(name, saved):
    spec = SPECS[name]
    bb = _backbone(name, saved)
    assert isinstance(bb, Backbone)
    assert (bb.family, bb.variant, bb.num_blocks) == (spec["family"], spec["variant"], LAYERS)
    assert bb.size and bb.name.endswith(bb.size)
    fp = bb.fingerprint
    assert len(fp) == 16 and fp == _backbone(name, saved).fingerprint   # stable across loads
    assert fp != _backbone(name, saved, resolution="model").fingerprint  # preprocessing counts


@pytest.mark.parametrize("name", ["dinov2", "siglip"])
def test_image_encoders_encode_each_frame_alone(name, saved):
    bb = _backbone(name, saved)
    video = _clip(SPECS[name], b=1)
    clip = bb.features(video, 0, [LAYERS])[LAYERS]                 # (1, T, h, w, D)
    for i in range(video.shape[1]):
        alone = bb.features(video[:, i:i + 1], 0, [LAYERS])[LAYERS]
        torch.testing.assert_close(clip[:, i:i + 1], alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["videomae", "vjepa2"])
def test_video_encoders_tile_an_image(name, saved):
    spec = SPECS[name]
    bb = _backbone(name, saved, image_frames=4)
    image = _clip(spec, b=2, frames=1)
    tiled = image.expand(-1, 4, -1, -1, -1).contiguous()
    a, b = bb.features(image, 0, [2])[2], bb.features(tiled, 0, [2])[2]
    assert a.shape[1] == 4 // bb.tubelet_size
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["videomae", "vjepa2"])
def test_video_encoders_resample_frames(name, saved):
    """num_frames=4 on a 7-frame clip = the clip at frames round(linspace(0, 6, 4)) = 0, 2, 4, 6."""
    bb = _backbone(name, saved, num_frames=4)
    video = _clip(SPECS[name], b=1, frames=7)
    picked = video[:, [0, 2, 4, 6]]
    torch.testing.assert_close(bb.features(video, 0, [1])[1], bb.features(picked, 0, [1])[1])


def test_named_errors(saved, tmp_path):
    with pytest.raises(ModelDirError, match="not a directory"):
        build_dinov2(tmp_path / "missing", device="cpu", reuse=False)
    with pytest.raises(ModelDirError, match="expected"):                  # another model's dir
        build_dinov2(saved["siglip"], device="cpu", reuse=False)
    with pytest.raises(ModelDirError, match="expected"):
        build_vjepa2(saved["videomae"], device="cpu", reuse=False)
    # resolutions: DINOv2 wants multiples of 14 (30 -> 28), VideoMAE / V-JEPA 2 only the config size
    with pytest.raises(ClipShapeError, match=r"nearest valid is \(28, 28\)"):
        _backbone("dinov2", saved).features(torch.zeros(1, 1, 30, 29, 3, dtype=torch.uint8), 0, 1)
    with pytest.raises(ClipShapeError, match=r"nearest valid is \(28, 42\)"):
        _backbone("dinov2", saved, resolution=(30, 40))                    # at build time
    with pytest.raises(ClipShapeError, match=r"\(32, 32\)"):
        _backbone("vjepa2", saved).features(torch.zeros(1, 2, 48, 48, 3, dtype=torch.uint8), 0, 1)
    # frame counts: VideoMAE exactly config.num_frames, V-JEPA 2 multiples of the tubelet
    with pytest.raises(ClipShapeError, match="T = 6: the nearest valid is 4"):
        _backbone("videomae", saved).features(_clip(SPECS["videomae"], frames=6), 0, 1)
    with pytest.raises(ClipShapeError, match="T = 5: the nearest valid is 6.*num_frames=6"):
        _backbone("vjepa2", saved).features(_clip(SPECS["vjepa2"], frames=5), 0, 1)
    siglip = _backbone("siglip", saved)
    with pytest.raises(ValueError, match="image encoder"):
        type(siglip)(siglip.model, siglip.model_dir, num_frames=4)


def test_resize_policy(saved):
    """resolution='model' resizes any clip to the trained size; DINOv2 at another multiple of 14
    uses the library's interpolated positions and still equals its forward."""
    bb = _backbone("siglip", saved, resolution="model")
    odd = torch.zeros(1, 2, 50, 70, 3, dtype=torch.uint8)
    assert bb.features(odd, 0, 1)[1].shape[2:4] == (2, 2)
    dino = _backbone("dinov2", saved, resolution=(42, 28))
    video = _clip(SPECS["dinov2"], b=1)
    feats = dino.features(video, 0, [LAYERS])[LAYERS]
    pixels = dino.preprocess(video)
    assert pixels.shape[-2:] == (42, 28) and feats.shape == (1, 3, 3, 2, 32)
    with torch.no_grad():
        ref = dino.model(pixel_values=pixels, output_hidden_states=True).hidden_states[LAYERS]
    torch.testing.assert_close(feats, ref[:, 1:].reshape(1, 3, 3, 2, 32), rtol=1e-5, atol=1e-5)
    # SigLIP off its trained grid: the library's interpolated position embeddings
    siglip = _backbone("siglip", saved, resolution=(48, 32))
    feats = siglip.features(video, 0, [LAYERS])[LAYERS]
    pixels = siglip.preprocess(video)
    with torch.no_grad():
        ref = siglip.model(pixel_values=pixels, output_hidden_states=True,
                           interpolate_pos_encoding=True).hidden_states[LAYERS]
    torch.testing.assert_close(feats, ref.reshape(1, 3, 3, 2, 32), rtol=1e-5, atol=1e-5)


def test_siglip_loads_the_vision_half_of_a_full_checkpoint(tmp_path):
    """The published SigLIP directories hold SiglipModel (text + vision)."""
    torch.manual_seed(1)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=32, patch_size=16)
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                vocab_size=99)
    full = transformers.SiglipModel(transformers.SiglipConfig(text_config=text,
                                                              vision_config=vision))
    full.save_pretrained(tmp_path)
    bb = build_siglip(tmp_path, device="cpu", dtype="float32", reuse=False)
    assert bb.num_blocks == 2
    for key, value in full.vision_model.state_dict().items():
        assert torch.equal(bb.model.state_dict()[key], value), key


# ---- through the real CLI, loaded by the gin file -------------------------------------------

GIN = {"dinov2": ("dinov2", "DINOV2_DIR", ()),
       "siglip": ("siglip", "SIGLIP_DIR", ()),
       "videomae": ("videomae", "VIDEOMAE_DIR", ("--gin.VIDEOMAE_FRAMES=4",)),
       "vjepa2": ("vjepa2", "VJEPA2_DIR", ("--gin.VJEPA2_FRAMES=4", "--gin.VJEPA2_IMAGE_FRAMES=4"))}


@pytest.fixture(scope="module")
def synthetic_cache(tmp_path_factory):
    """The smoke task's clips, rendered once for the CLI tests (a private cache folder)."""
    path = tmp_path_factory.mktemp("synthetic")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WALT_PROBE_SYNTHETIC_CACHE", str(path))
        yield path


@pytest.mark.parametrize("name", list(GIN))
def test_probe_through_the_cli(name, saved, synthetic_cache, tmp_path):
    """`walt-probe probe` on the smoke task (5-frame 32 x 32 clips) with the backbone built by
    its gin file from the saved tiny model: the run finishes and records the encoder."""
    import json

    from runners import cli
    gin_name, macro, extra = GIN[name]
    out = tmp_path / "run"
    rc = cli.main(["probe", "--gin_file=experiments/smoke_tiny.gin",
                   f"--gin_file=backbones/external/{gin_name}.gin",
                   f"--gin.{macro}='{saved[name]}'", *extra,
                   f"--gin.Run.output_dir='{out}'", "--gin.STEPS=2", "--gin.BLOCK=2",
                   "--gin.SyntheticMotionActions.num_train=4",
                   "--gin.SyntheticMotionActions.num_val=2", "--gin.Probe.batch_size=2",
                   "--gin.Probe.eval_batch_size=2"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    built = _backbone(name, saved, resolution="model")
    assert m["status"] == "ok" and (m["block"], m["num_blocks"]) == (2, LAYERS)
    assert (m["backbone"], m["variant"], m["size"]) == (built.name, built.variant, built.size)
