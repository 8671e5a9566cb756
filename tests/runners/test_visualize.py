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
        spans = backbone.feature_spans(17)  # the feature frame covering each shown pixel frame
        covering = [int(((spans[:, 0] <= f) & (f < spans[:, 1])).nonzero()[0]) for f in (0, 4, 8, 12, 16)]
        want = visualize._pca_rgb(feats[covering]).numpy()
        got = np.stack([np.asarray(images[row * t + i][0]) for i in range(t)])
        np.testing.assert_allclose(got, want, atol=1e-5)  # exact PCA, signs fixed: deterministic


def test_motion_and_t_variance_views_through_the_cli(tmp_path, capsys):
    import csv

    out = tmp_path / "motion.png"
    assert cli.main(["visualize", "--what", "motion", "--clips", "2", "--blocks", "2",
                     "--timesteps", "0", "--block", "2", "--timestep", "0", "--image_size", "64",
                     "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    assert {(r["model"], r["block"], r["t"]) for r in rows} == {("I-WALT", "2", "0"), ("V-WALT", "2", "0")}
    assert out.stat().st_size > 10_000 and (tmp_path / "motion_r2.png").is_file()
    assert "motion R^2  V-WALT  block  2  t =   0" in capsys.readouterr().out

    out = tmp_path / "tvar.png"
    assert cli.main(["visualize", "--what", "t-variance", "--clips", "2", "--blocks", "2",
                     "--timesteps", "500", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    clean = [r for r in rows if r["t"] == "0"]
    assert len(clean) == 2 and all(abs(float(r["explained"]) - 1) < 1e-4 for r in clean)
    assert all(abs(float(r["cosine"]) - 1) < 1e-6 for r in clean)
    noisy = [float(r["cosine"]) for r in rows if r["t"] == "500"]
    assert len(noisy) == 2 and all(c < 0.9999 for c in noisy)


def _fake_run(folder, task, arrays):
    import json

    import numpy as np

    folder.mkdir()
    (folder / "head.json").write_text(json.dumps({"task": task, "split": "val", "block": 2, "t": 100}))
    (folder / "head.safetensors").write_bytes(b"")
    np.savez(folder / "predictions.npz", **arrays)
    return str(folder)


def test_prediction_overlays_for_every_kind(tmp_path, monkeypatch):
    """Truth next to predictions for each task kind, on stand-in predictions (the drawing; the
    files themselves come from a real probe in tests/runners/test_kept_readouts.py)."""
    import numpy as np

    from runners import visualize_predictions as vp

    rng = np.random.default_rng(0)
    n, t, h, w, q = 2, 5, 32, 32, 4
    videos = [{"video": rng.integers(0, 255, (t, h, w, 3), dtype=np.uint8)} for _ in range(n)]
    monkeypatch.setattr(vp, "_dataset", lambda run_dir, split: (videos, None))
    index = np.arange(n)
    kinds = {
        "depth": {"pred_depth": rng.random((n, t, h, w)) + 1, "depth": rng.random((n, t, h, w)) + 1},
        "points": {"pred_values": rng.random((n, q, t, 2)), "pred_logits": rng.normal(size=(n, q, t, 2)),
                   "target_points": rng.random((n, q, t, 2)) * 32, "occluded": rng.random((n, q, t)) > 0.7,
                   "query_points": np.zeros((n, q, 3))},
        "boxes": {"pred_values": np.tile([0.1, 0.1, 0.5, 0.6], (n, 3, t, 1)),
                  "boxes": np.tile([0.2, 0.2, 0.6, 0.7], (n, 3, t, 1)), "box_valid": np.ones((n, 3, t), bool)},
        "pose": {"pred_pose": np.tile(np.eye(3, 4), (n, 1, 1)), "pose": np.tile(np.eye(3, 4), (n, 1, 1))},
        "classes": {"pred_logits": rng.normal(size=(n, 11)), "label": np.array([3, 4])},
    }
    for kind, arrays in kinds.items():
        run_a = _fake_run(tmp_path / f"{kind}_a", kind, {"index": index, **arrays})
        run_b = _fake_run(tmp_path / f"{kind}_b", kind, {"index": index, **arrays})
        out = tmp_path / f"{kind}.png"
        argv = ["visualize", "--what", "predictions", run_a, run_b, "--examples", "2", "--out", str(out)]
        assert cli.main(argv + (["--gif"] if kind == "points" else [])) == 0, kind
        assert out.stat().st_size > 5_000, kind
    assert (tmp_path / "points.gif").stat().st_size > 1_000


def test_prediction_overlays_draw_the_predictions_they_are_given(tmp_path, monkeypatch):
    """The overlay figure's artists carry the kept predictions (read back from the figure, not
    its file size): depth images are the predicted frame, boxes the predicted corners in pixels,
    point trails the predicted tracks, pose labels the closed-form errors, classes the top-5."""
    import matplotlib.figure
    import numpy as np
    from matplotlib.patches import Rectangle

    from runners import visualize_predictions as vp

    figures = []
    save = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda self, *a, **k: (figures.append(self), save(self, *a, **k))[1])
    rng = np.random.default_rng(1)
    n, t, h, w, q = 1, 5, 32, 48, 2
    monkeypatch.setattr(vp, "_dataset", lambda run_dir, split: (
        [{"video": rng.integers(0, 255, (t, h, w, 3), dtype=np.uint8)}], None))

    def draw(kind, arrays):
        run = _fake_run(tmp_path / kind, kind, {"index": np.arange(n), **arrays})
        out = tmp_path / f"{kind}.png"
        assert cli.main(["visualize", "--what", "predictions", run, "--examples", "1", "--out", str(out)]) == 0
        ax = figures[-1].axes[2]  # row 0: frame, truth, the run's predictions
        return ax

    pred_depth = rng.random((n, t, h, w)) + 1
    ax = draw("depth", {"pred_depth": pred_depth, "depth": rng.random((n, t, h, w)) + 1})
    np.testing.assert_allclose(np.asarray(ax.get_images()[0].get_array()), pred_depth[0, t // 2])

    boxes = np.tile([0.25, 0.5, 0.75, 1.0], (n, 1, t, 1))
    ax = draw("boxes", {"pred_values": boxes, "boxes": boxes[..., [1, 0, 3, 2]] / 2,
                        "box_valid": np.ones((n, 1, t), bool)})
    (rect,) = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert rect.get_xy() == (12.0, 16.0) and (rect.get_width(), rect.get_height()) == (24.0, 16.0)

    track = np.stack([np.linspace(0.1, 0.9, t), np.linspace(0.2, 0.4, t)], -1)    # (T, 2) [x, y]
    ax = draw("points", {"pred_values": np.tile(track, (n, q, 1, 1)),
                         "pred_logits": np.full((n, q, t, 2), 5.0),
                         "target_points": np.zeros((n, q, t, 2)), "occluded": np.zeros((n, q, t), bool),
                         "query_points": np.zeros((n, q, 3))})
    drawn = np.array([np.stack(line.get_data(), -1) for line in ax.get_lines()])  # (q (T-1), 2, 2)
    want = np.stack([track[:-1], track[1:]], 1) * [w, h]
    np.testing.assert_allclose(drawn, np.concatenate([want] * q))

    rot90 = np.array([[0.0, -1, 0, 1], [1, 0, 0, 0], [0, 0, 1, 0]])
    ax = draw("pose", {"pred_pose": rot90[None], "pose": np.eye(3, 4)[None]})
    assert ax.get_xlabel() == "rot 90.0°  trans 1.00 m"

    logits = np.array([[0.0, 3.0, 1.0, 2.0, -1.0, -2.0]])
    ax = draw("classes", {"pred_logits": logits, "label": np.array([3])})
    text = ax.texts[0].get_text().splitlines()
    p = np.exp(logits[0] - 3) / np.exp(logits[0] - 3).sum()
    assert text == ["top-5", f"  1: {p[1]:.2f}", f"> 3: {p[3]:.2f}", f"  2: {p[2]:.2f}",
                    f"  0: {p[0]:.2f}", f"  4: {p[4]:.2f}"]
