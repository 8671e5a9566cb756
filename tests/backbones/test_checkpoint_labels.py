"""Labels from the truth: a WALT backbone built from a checkpoint reports the checkpoint's own
size and variant; a configured size or variant that disagrees with it is refused, naming both."""

from pathlib import Path

import pytest

from backbones.build import build_backbone
from walt.checkpoint import save_module
from walt.transformer import WALT
from walt_probe.errors import CheckpointError

KW = dict(tokenizer="tiny", image_size=32, num_frames=5, reuse=False)


@pytest.fixture(scope="module")
def small_image(tmp_path_factory) -> Path:
    """A 'small'-shaped I-WALT checkpoint for 5 x 32 x 32 clips (latents 2 x 4 x 4)."""
    model = WALT.from_size("small", variant="image", latent_shape=(2, 4, 4), stw_window=(2, 2, 2))
    return save_module(model, tmp_path_factory.mktemp("ckpt") / "iwalt_small.safetensors")


def test_the_checkpoint_decides_size_and_variant(small_image):
    bb = build_backbone(walt_checkpoint=str(small_image), **KW)
    assert (bb.size, bb.variant, bb.num_blocks) == ("small", "image", 8)
    assert build_backbone(size="small", variant="image", walt_checkpoint=str(small_image), **KW).size == "small"


def test_another_size_is_refused_naming_both(small_image):
    with pytest.raises(CheckpointError) as err:
        build_backbone(size="tiny", walt_checkpoint=str(small_image), **KW)
    msg = str(err.value)
    assert "size 'small'" in msg and "configured size is 'tiny'" in msg and "width=256" in msg and "width=192" in msg


def test_another_variant_is_refused_unless_asked_for(small_image):
    with pytest.raises(CheckpointError, match="trained as I-WALT"):
        build_backbone(size="small", variant="video", walt_checkpoint=str(small_image), **KW)
    bb = build_backbone(size="small", variant="video", walt_checkpoint=str(small_image),
                        allow_variant_override=True, **KW)
    assert bb.variant == "video"  # labelled with the variant that ran
