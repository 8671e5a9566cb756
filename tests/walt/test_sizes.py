"""Named sizes: counts within 3% of their names, I-WALT == V-WALT exactly, small fits 16 MiB."""

import pytest
import torch

from walt.counts import count_tokenizer_parameters, count_walt_parameters
from walt.sizes import TOKENIZER_SIZES, WALT_NOMINAL, WALT_SIZES
from walt.tokenizer import Tokenizer
from walt.transformer import WALT


@pytest.mark.parametrize("name", [n for n, v in WALT_NOMINAL.items() if v])
def test_named_size_within_3_percent(name):
    count = count_walt_parameters(name)
    assert abs(count / WALT_NOMINAL[name] - 1) <= 0.03, (name, count)


@pytest.mark.parametrize("name", list(WALT_SIZES))
def test_image_and_video_variants_have_identical_tensors(name):
    with torch.device("meta"):
        video = WALT.from_size(name, variant="video")
        image = WALT.from_size(name, variant="image")
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(video) == shapes(image)
    assert count_walt_parameters(name, "video") == count_walt_parameters(name, "image")


@pytest.mark.parametrize("name, low, high", [("tiny", 1e6, 3e6), ("small", 5e6, 8e6)])
def test_small_sizes_ranges(name, low, high):
    assert low <= count_walt_parameters(name) <= high


def test_small_bf16_checkpoint_under_16_mib():
    assert count_walt_parameters("small") * 2 < 16 * 2 ** 20


def test_284m_features_have_the_width_the_paper_readout_counts_need():
    """DESIGN.md: the paper's readout parameter counts (Tables 5-6) reproduce only at D = 1024.
    The activations the 284m backbone actually captures must have that D: built on the meta
    device, run for one block, with the heads built from the captured width."""
    from readouts.depth import DepthReadout
    from readouts.layers import count_parameters
    from readouts.pose import PoseReadout

    with torch.device("meta"):
        model = WALT.from_size("284m")
        latents = torch.empty(1, 8, *WALT_SIZES["284m"]["latent_shape"])
        d = model.forward_features(latents, 500, [1])[1].shape[-1]
        counts = count_parameters(PoseReadout(d)), count_parameters(DepthReadout(d, 256))
    assert counts == (1_650_444, 3_284_353), f"captured width {d} does not give the paper's counts"


def _tokenizer_formula(base_channels, channel_mult, num_res_blocks, latent_channels,
                       temporal_downsample) -> tuple[int, int]:
    """(encoder, decoder) parameters from the layer list in walt/tokenizer.py's docstring:
    3x3x3 causal convolutions without bias (27 c_in c_out), GroupNorm with scale and shift
    (2c), residual blocks GN-conv-GN-conv with a 1x1x1 shortcut (no bias) when the width
    changes, strided 3x3x3 downsampling, depth-to-space upsampling by a 3x3x3 conv to
    c * s_t * 2 * 2 channels, a 1x1x1 latent projection with bias."""
    def conv3(ci, co):
        return 27 * ci * co

    def res(ci, co):
        shortcut = ci * co if ci != co else 0
        return 2 * ci + conv3(ci, co) + 2 * co + conv3(co, co) + shortcut

    widths = [base_channels * m for m in channel_mult]
    enc, ch = conv3(3, widths[0]), widths[0]
    for i, width in enumerate(widths):
        for _ in range(num_res_blocks):
            enc, ch = enc + res(ch, width), width
        if i < len(widths) - 1:
            enc += conv3(ch, ch)
    enc += num_res_blocks * res(ch, ch) + 2 * ch + (ch * latent_channels + latent_channels)
    dec = conv3(latent_channels, ch) + num_res_blocks * res(ch, ch)
    for i in reversed(range(len(widths))):
        for _ in range(num_res_blocks):
            dec, ch = dec + res(ch, widths[i]), widths[i]
        if i > 0:
            dec += conv3(ch, ch * (2 if temporal_downsample[i - 1] else 1) * 4)
    dec += 2 * ch + conv3(ch, 3)
    return enc, dec


@pytest.mark.parametrize("name", list(TOKENIZER_SIZES))
def test_tokenizer_count_is_the_formula_of_its_layers(name):
    n = count_tokenizer_parameters(name)
    encoder, decoder = _tokenizer_formula(**TOKENIZER_SIZES[name])
    assert (n["encoder"], n["decoder"]) == (encoder, decoder)
    # The total covers every parameter of the module (nothing outside encoder and decoder).
    with torch.device("meta"):
        assert n["total"] == sum(p.numel() for p in Tokenizer.from_size(name).parameters())


def test_unknown_size_names_the_choices():
    with pytest.raises(KeyError, match="tiny"):
        WALT.from_size("huge")


def test_visualize_sizes_prints_a_consistent_table(capsys):
    """The printed table read back as numbers: each row's width / depth / heads are the
    table's, I-WALT == V-WALT, the 'vs name' column is the printed count against the name and
    within 3%, and each tokenizer total is its encoder + decoder columns and the formula's."""
    from runners import visualize
    assert visualize.show_sizes(None) == 0
    rows = {}
    for line in capsys.readouterr().out.splitlines():
        cells = line.split()
        if cells and cells[0] in set(WALT_SIZES) | set(TOKENIZER_SIZES) and cells[1].isdigit():
            rows.setdefault(cells[0], []).append(cells)
    for name, kw in WALT_SIZES.items():
        cells = rows[name][0]
        assert [int(c) for c in cells[1:4]] == [kw["width"], kw["depth"], kw["num_heads"]]
        video, image = (int(c.replace(",", "")) for c in cells[6:8])
        assert video == image
        nominal = WALT_NOMINAL[name]
        if nominal:
            assert cells[8] == f"{100 * (video / nominal - 1):+.1f}%"
            assert abs(video / nominal - 1) <= 0.03
        else:
            assert cells[8] == "-"
    for name, kw in TOKENIZER_SIZES.items():
        cells = rows[name][-1]
        encoder, decoder, total = (int(c.replace(",", "")) for c in cells[4:7])
        assert (encoder, decoder, total) == (*_tokenizer_formula(**kw), encoder + decoder)
