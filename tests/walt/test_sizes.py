"""Named sizes: counts within 3% of their names, I-WALT == V-WALT exactly, small fits 16 MiB."""

import pytest
import torch

from walt.counts import count_tokenizer_parameters, count_walt_parameters
from walt.sizes import TOKENIZER_SIZES, WALT_NOMINAL, WALT_SIZES
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


def test_284m_has_width_1024():
    assert WALT_SIZES["284m"]["width"] == 1024


@pytest.mark.parametrize("name", list(TOKENIZER_SIZES))
def test_tokenizer_sizes_count(name):
    n = count_tokenizer_parameters(name)
    assert n["total"] == n["encoder"] + n["decoder"] > 0


def test_unknown_size_names_the_choices():
    with pytest.raises(KeyError, match="tiny"):
        WALT.from_size("huge")


def test_visualize_sizes_prints_the_tested_counts(capsys):
    from runners import visualize
    assert visualize.show_sizes(None) == 0
    printed = capsys.readouterr().out
    for name in WALT_SIZES:
        assert f"{count_walt_parameters(name):,}" in printed
