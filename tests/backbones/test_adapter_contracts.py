"""The adapter bases declare each family's hooks abstract: a family class that forgets one
cannot be built, and the error names the missing hook (not a NotImplementedError mid-probe)."""

import pytest

from backbones.hf_encoder import HFEncoderBackbone
from backbones.latent_diffusion import LatentDiffusionBackbone
from backbones.video_dit import VideoDiT


@pytest.mark.parametrize("base, hooks", [
    (HFEncoderBackbone, {"model_resolution", "layers", "embed", "run_layer", "check_resolution", "size"}),
    (LatentDiffusionBackbone, {"blocks_of", "_run", "_to_grid", "_resolution_multiple", "_weights_dirs", "_configs"}),
    (VideoDiT, {"inner_dim", "check_clip", "encode", "add_noise", "noise_level", "transformer_call",
                "tokens_to_grid", "temporal_layout"}),
])
def test_a_family_missing_a_hook_cannot_be_built_and_the_error_names_it(base, hooks):
    assert set(base.__abstractmethods__) == hooks
    incomplete = type("Incomplete", (base,), {})
    with pytest.raises(TypeError, match="abstract method"):
        incomplete.__new__(incomplete)
