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


def test_brick_wall_pca_figure_shows_the_clip_and_each_models_pca_through_the_cli(tmp_path, monkeypatch):
    """The figure's images are read back from its artists: row 0 the brick-wall frames at the last
    pixel frame of each latent, rows 1-2 the PCA maps of I-WALT and V-WALT features of that clip
    at the requested block and t (recomputed here from the same checkpoints)."""
    import matplotlib.figure
    import numpy as np

    from backbones.build import build_backbone
    from tasks.synthetic.brick_wall import brick_wall_clip

    shown = []
    original = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda fig, *a, **k: (shown.append([[im.get_array() for im in ax.images]
                                                            for ax in fig.axes]), original(fig, *a, **k)))
    out = tmp_path / "pca.png"
    assert cli.main(["visualize", "--what", "pca", "--block", "2", "--timestep", "100",
                     "--out", str(out)]) == 0
    assert out.is_file() and len(shown) == 1
    images = shown[0]
    clip = brick_wall_clip(image_size=64, num_frames=17)
    t = 5  # latent frames of 17 pixel frames
    assert len(images) == 3 * t and all(len(im) == 1 for im in images)
    for i in range(t):
        np.testing.assert_array_equal(np.asarray(images[i][0]), clip["video"][min(4 * i, 16)].numpy())
    for row, (variant, ckpt) in enumerate((("image", "iwalt"), ("video", "vwalt")), start=1):
        backbone = build_backbone(variant=variant, tokenizer_checkpoint="checkpoints/tokenizer_small.safetensors",
                                  walt_checkpoint=f"checkpoints/{ckpt}_small.safetensors", image_size=64)
        feats = backbone.features(clip["video"][None], 100, [2], seeds=torch.zeros(1, dtype=torch.long))[2][0]
        want = visualize._pca_rgb(feats).numpy()
        got = np.stack([np.asarray(images[row * t + i][0]) for i in range(t)])
        np.testing.assert_allclose(got, want, atol=1e-5)  # exact PCA, signs fixed: deterministic
