"""Views of motion and noise in the features (`walt-probe visualize --what motion | t-variance`).

  motion      Fig. 3, measured: synthetic clips in which one object moves (the renderer knows the
              true optical flow, tasks/synthetic/flow.py) through two backbones; the picture is
              the top-3 feature PCA as colours next to the true flow; the number, per model,
              block and t, is the held-out R^2 of a ridge map from the block's tokens to the
              flow magnitude on the token grid (probing/views.py motion_r2). Writes the PNG, a
              CSV of every (model, block, t) and a Fig. 5-style PNG of R^2 over blocks.
  t-variance  per block, the fraction of the block's feature variance at t explained by its clean
              (t = 0) features, and their cosine similarity, as t grows (probing/views.py).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from walt.checkpoint import write_text_atomic


def _ints(text: str) -> list[int]:
    return [int(v) for v in str(text).split(",") if v.strip()]


def backbones(args):
    """[(label, backbone)]: I-WALT and V-WALT from the checkpoints named by the flags."""
    from backbones.build import build_backbone

    return [(label, build_backbone(variant=variant, tokenizer_checkpoint=args.tokenizer,
                                   walt_checkpoint=ckpt, image_size=args.image_size))
            for label, variant, ckpt in (("I-WALT", "image", args.iwalt),
                                         ("V-WALT", "video", args.vwalt))]


FRAMES = (0, 4, 8, 12, 16)  # clip frames shown: the last frame of each of V-WALT's 5 latents


def _covering(backbone, num_feature_frames: int) -> list[int]:
    """The feature frame covering each of FRAMES: from the backbone's own frame spans when it
    reports them (backbones/base.py feature_spans), else WALT's causal layout (frame 0 alone,
    then 4 frames per latent) or one feature frame per clip frame."""
    spans = getattr(backbone, "feature_spans", None)
    if callable(spans):
        s = spans(17)
        return [int(((s[:, 0] <= f) & (f < s[:, 1])).nonzero()[0]) for f in FRAMES]
    if num_feature_frames == 17:
        return list(FRAMES)
    return [min((f + 3) // 4, num_feature_frames - 1) for f in FRAMES]


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def show_motion(args) -> int:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from probing import views
    from runners.drawing import flow_rgb, pca_rgb
    from tasks.synthetic.flow import motion_clip

    n = max(2, args.clips)
    clips = [motion_clip(seed, image_size=args.image_size, num_frames=17) for seed in range(n)]
    stack = {k: torch.stack([c[k] for c in clips]) for k in ("video", "magnitude")}
    half = n // 2
    train = {k: v[:half] for k, v in stack.items()}
    test = {k: v[half:] for k, v in stack.items()}
    # The picture's (block, t) is always measured, so its panels carry their number.
    blocks = sorted({*_ints(args.blocks), args.block})
    timesteps = sorted({*_ints(args.timesteps), args.timestep})
    models = backbones(args)
    rows, pcas = [], []
    for label, backbone in models:
        for row in views.motion_r2(backbone, train, test, blocks, timesteps):
            rows.append({"model": label, **row})
            print(f"motion R^2  {label}  block {row['block']:>2}  t = {row['t']:>3}: {row['r2']:.3f}")
        feats = views.clip_features(backbone, test["video"][:1], args.timestep, [args.block])
        pcas.append((label, pca_rgb(feats[args.block][0][_covering(backbone, feats[args.block].shape[1])])))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_csv(out.with_suffix(".csv"), rows)

    # The picture: test clip 0, its true flow, each model's PCA at (block, t) in the feature
    # frame covering each shown clip frame.
    clip = clips[half]
    frames, t = list(FRAMES), len(FRAMES)
    r2 = {(r["model"], r["block"], r["t"]): r["r2"] for r in rows}
    fig, axes = plt.subplots(2 + len(pcas), t, figsize=(2.2 * t, 2.3 * (2 + len(pcas))),
                             layout="constrained", squeeze=False)
    for i, f in enumerate(frames):
        axes[0, i].imshow(clip["video"][f].numpy())
        axes[0, i].set_title(f"frame {f}", fontsize=9)
        axes[1, i].imshow(flow_rgb(clip["flow"][f]))
        for r, (label, rgb) in enumerate(pcas, start=2):
            axes[r, i].imshow(rgb[i].numpy(), interpolation="nearest")
    axes[0, 0].set_ylabel("clip")
    axes[1, 0].set_ylabel("true flow")
    for r, (label, _) in enumerate(pcas, start=2):
        value = r2.get((label, args.block, args.timestep))
        axes[r, 0].set_ylabel(f"{label}\nR² = {value:.2f}" if value is not None else label)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"Motion in the features (paper Fig. 3, measured): PCA of block {args.block} at "
                 f"t = {args.timestep}; R² of a ridge map to the flow magnitude on held-out clips "
                 f"({n - half} of {n})", fontsize=10)
    fig.savefig(out, dpi=110)
    plt.close(fig)

    # Fig. 5-style: R^2 over blocks, one line per model and t.
    fig, ax = plt.subplots(figsize=(5.5, 3.5), layout="constrained")
    for label, _ in models:
        for ts in timesteps:
            pts = sorted((r["block"], r["r2"]) for r in rows if r["model"] == label and r["t"] == ts)
            ax.plot(*zip(*pts), marker="o", linestyle="-" if label == "V-WALT" else "--",
                    label=f"{label} t={ts}")
    ax.set_xlabel("block")
    ax.set_ylabel("held-out R² (flow magnitude)")
    ax.legend(fontsize=7)
    curve = out.with_name(out.stem + "_r2.png")
    fig.savefig(curve, dpi=110)
    plt.close(fig)
    print(f"wrote {out}, {curve}, {out.with_suffix('.csv')}")
    return 0


def show_t_variance(args) -> int:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from probing import views
    from tasks.synthetic.flow import motion_clip

    videos = torch.stack([motion_clip(s, image_size=args.image_size, num_frames=17)["video"]
                          for s in range(max(1, args.clips))])
    blocks, timesteps = _ints(args.blocks), sorted({0, *_ints(args.timesteps)})
    models = backbones(args)
    rows = []
    for label, backbone in models:
        for row in views.timestep_variance(backbone, videos, blocks, timesteps):
            rows.append({"model": label, **row})
            print(f"t-variance  {label}  block {row['block']:>2}  t = {row['t']:>3}: explained "
                  f"{row['explained']:.3f}  cosine {row['cosine']:.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_csv(out.with_suffix(".csv"), rows)
    fig, axes = plt.subplots(len(models), 2, figsize=(9, 3.2 * len(models)), layout="constrained",
                             squeeze=False)
    for m, (label, _) in enumerate(models):
        for c, (key, name) in enumerate((("explained", "variance explained by t = 0 features"),
                                         ("cosine", "cosine similarity to t = 0"))):
            ax = axes[m, c]
            for b in blocks:
                pts = sorted((r["t"], r[key]) for r in rows if r["model"] == label and r["block"] == b)
                ax.plot(*zip(*pts), marker="o", label=f"block {b}")
            ax.set_title(f"{label}: {name}", fontsize=9)
            ax.set_xlabel("timestep t")
            ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.02)
            ax.legend(fontsize=7)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}, {out.with_suffix('.csv')}")
    return 0


def add_arguments(group) -> None:
    """Flags shared by the motion and t-variance views (the checkpoint flags are the pca view's)."""
    group.add_argument("--clips", type=int, default=8,
                       help="synthetic clips (motion: half fit the ridge map, half score it)")
    group.add_argument("--blocks", default="2,4,6,8", help="blocks to measure (default: %(default)s)")
    group.add_argument("--timesteps", default="0,200,500,800",
                       help="timesteps to measure (default: %(default)s)")
