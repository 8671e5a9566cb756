"""`walt-probe visualize --what pca`: the brick-wall PCA maps of the shipped I-WALT and V-WALT."""

import torch

from runners import cli, visualize


def test_pca_colours_span_the_unit_cube_per_component():
    feats = torch.randn(5, 4, 4, 32)
    rgb = visualize._pca_rgb(feats)
    assert rgb.shape == (5, 4, 4, 3)
    flat = rgb.reshape(-1, 3)
    torch.testing.assert_close(flat.min(0).values, torch.zeros(3))
    torch.testing.assert_close(flat.max(0).values, torch.ones(3))


def test_pca_of_rank_one_features_puts_the_signal_in_one_component():
    direction = torch.randn(32)
    scale = torch.linspace(-1, 1, 5 * 4 * 4).reshape(5, 4, 4, 1)
    rgb = visualize._pca_rgb(scale * direction)
    first = rgb[..., 0].reshape(-1)
    # the first component is the scale itself (up to sign), min-max scaled
    expected = (scale.reshape(-1) + 1) / 2
    assert torch.allclose(first, expected, atol=1e-4) or torch.allclose(first, 1 - expected, atol=1e-4)


def test_brick_wall_pca_png_through_the_cli(tmp_path):
    out = tmp_path / "pca.png"
    assert cli.main(["visualize", "--what", "pca", "--block", "2", "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
