"""`walt-probe visualize`: look at the models and what they make.

  --what sizes    parameter table of every named WALT size (I-WALT and V-WALT, counted on the
                  meta device, so instant) and of every tokenizer size.
  --what pca      the paper's Fig. 4 probe: the brick-wall clip (a frozen region with a moving
                  subset inside) through I-WALT and V-WALT, their features at one block and t
                  projected on the first three principal components and shown as colours, with
                  its number: the AUROC of the first component for telling the moving subset
                  from the frozen region (probing/views.py brick_wall_auroc; 0.5 = blind).
  --what motion, t-variance   runners/visualize_motion.py (Fig. 3 measured; timestep variance)
  --what predictions          runners/visualize_predictions.py (kept predictions of probe runs)

Each view is one function `show_<what>(args) -> int` listed in VIEWS; adding a view adds one
function and one entry (argparse takes its choices from VIEWS).
"""

from __future__ import annotations

import sys
from pathlib import Path

from runners.drawing import pca_rgb as _pca_rgb  # noqa: F401  (the views' PCA colours)

USES_GIN = False  # the sizes table needs no configuration; views that do parse gin themselves


def show_sizes(args) -> int:
    """Prints the named-size tables with the counts tests/walt/test_sizes.py checks."""
    from walt.counts import count_tokenizer_parameters, count_walt_parameters
    from walt.sizes import TOKENIZER_SIZES, WALT_NOMINAL, WALT_SIZES

    out = sys.stdout
    out.write("WALT transformer (parameters counted on the meta device, default latent grid)\n")
    header = (f"{'size':<6} {'width':>5} {'depth':>5} {'heads':>5} {'latent t,h,w':>12} "
              f"{'STW window':>10} {'V-WALT':>14} {'I-WALT':>14} {'vs name':>8}\n")
    out.write(header)
    out.write("-" * (len(header) - 1) + "\n")
    for name, kw in WALT_SIZES.items():
        video = count_walt_parameters(name, "video")
        image = count_walt_parameters(name, "image")
        nominal = WALT_NOMINAL.get(name)
        rel = f"{100 * (video / nominal - 1):+.1f}%" if nominal else "-"
        grid = ",".join(str(v) for v in kw["latent_shape"])
        window = "x".join(str(v) for v in kw["stw_window"])
        out.write(f"{name:<6} {kw['width']:>5} {kw['depth']:>5} {kw['num_heads']:>5} {grid:>12} "
                  f"{window:>10} {video:>14,} {image:>14,} {rel:>8}\n")
    out.write("\nTokenizer (causal 3-D CNN; 17 x H x W -> 5 x H/8 x W/8 x 8)\n")
    header = (f"{'size':<6} {'base ch':>7} {'mults':>9} {'blocks':>6} {'encoder':>14} "
              f"{'decoder':>14} {'total':>14}\n")
    out.write(header)
    out.write("-" * (len(header) - 1) + "\n")
    for name, kw in TOKENIZER_SIZES.items():
        n = count_tokenizer_parameters(name)
        mults = ",".join(str(m) for m in kw["channel_mult"])
        out.write(f"{name:<6} {kw['base_channels']:>7} {mults:>9} {kw['num_res_blocks']:>6} "
                  f"{n['encoder']:>14,} {n['decoder']:>14,} {n['total']:>14,}\n")
    return 0


def show_pca(args) -> int:
    """Brick-wall clip -> I-WALT and V-WALT features at (block, t) -> PCA colour maps (PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from backbones.build import build_backbone
    from probing.views import brick_wall_auroc
    from tasks.synthetic.brick_wall import brick_wall_clip

    clip = brick_wall_clip(image_size=args.image_size, num_frames=17)
    video = clip["video"][None]                                     # (1, T, H, W, 3) uint8
    frames = [0, 4, 8, 12, 16]                                      # last pixel frame of V-WALT's latent i
    rows = []
    for label, variant, ckpt in (("I-WALT", "image", args.iwalt), ("V-WALT", "video", args.vwalt)):
        backbone = build_backbone(variant=variant, tokenizer_checkpoint=args.tokenizer,
                                  walt_checkpoint=ckpt, image_size=args.image_size)
        feats = backbone.features(video, args.timestep, [args.block],
                                  seeds=torch.zeros(1, dtype=torch.long))[args.block][0]
        # I-WALT sees the clip frame by frame (17 feature frames), V-WALT as 5 causal latents:
        # show each model's feature frame covering the same pixel frame.
        spans = backbone.feature_spans(video.shape[1])
        covering = [int(((spans[:, 0] <= f) & (f < spans[:, 1])).nonzero()[0]) for f in frames]
        score = brick_wall_auroc(feats, clip["moving_mask"], clip["frozen_mask"])
        print(f"brick wall  {label}  block {args.block}  t = {args.timestep}: PC1 AUROC {score:.3f}")
        rows.append((f"{label}\nPC1 AUROC {score:.2f}", _pca_rgb(feats[covering])))  # (5, h, w, 3)
    t = len(frames)
    fig, axes = plt.subplots(3, t, figsize=(2.2 * t, 7), layout="constrained")
    for i in range(t):
        axes[0, i].imshow(video[0, frames[i]].numpy())
        axes[0, i].contour(clip["moving_mask"].numpy(), levels=[0.5], colors="w", linewidths=0.8)
        axes[0, i].contour(clip["frozen_mask"].numpy(), levels=[0.5], colors="y", linewidths=0.8)
        axes[0, i].set_title(f"frame {frames[i]}", fontsize=9)
        for r, (label, rgb) in enumerate(rows, start=1):
            axes[r, i].imshow(rgb[i].numpy(), interpolation="nearest")
            if i == 0:
                axes[r, i].set_ylabel(label)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"Brick-wall probe (paper Fig. 4): PCA of block {args.block} features at t = "
                 f"{args.timestep}. Yellow: frozen region; white: the subset inside it that moves.\n"
                 f"AUROC: first principal component, moving subset vs the rest of the frozen "
                 f"region (latent frames 1-{t - 1}; 0.5 = blind, 1 = separated)", fontsize=10)
    out = Path(args.out or DEFAULT_OUT["pca"])
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")
    return 0


def show_motion(args) -> int:
    from runners.visualize_motion import show_motion as show
    return show(_with_out(args, "motion"))


def show_t_variance(args) -> int:
    from runners.visualize_motion import show_t_variance as show
    return show(_with_out(args, "t-variance"))


def show_predictions(args) -> int:
    from runners.visualize_predictions import show_predictions as show
    return show(_with_out(args, "predictions"))


def _with_out(args, what: str):
    args.out = args.out or DEFAULT_OUT[what]
    return args


VIEWS = {"sizes": show_sizes, "pca": show_pca, "motion": show_motion,
         "t-variance": show_t_variance, "predictions": show_predictions}
DEFAULT_OUT = {"pca": "results/brick_wall_pca.png", "motion": "results/views/motion.png",
               "t-variance": "results/views/t_variance.png",
               "predictions": "results/views/predictions.png"}


def add_arguments(parser) -> None:
    from runners import visualize_motion, visualize_predictions

    parser.add_argument("--what", choices=sorted(VIEWS), default="sizes",
                        help="what to show (default: %(default)s)")
    parser.add_argument("runs", nargs="*", metavar="RUN_DIR",
                        help="--what predictions: probe run folders with predictions.npz")
    pca = parser.add_argument_group("--what pca | motion | t-variance")
    pca.add_argument("--block", type=int, default=5, help="block to capture (default: %(default)s)")
    pca.add_argument("--timestep", type=int, default=200, help="noise timestep (default: %(default)s)")
    pca.add_argument("--image_size", type=int, default=64)
    pca.add_argument("--tokenizer", default="checkpoints/tokenizer_small.safetensors")
    pca.add_argument("--iwalt", default="checkpoints/iwalt_small.safetensors")
    pca.add_argument("--vwalt", default="checkpoints/vwalt_small.safetensors")
    pca.add_argument("--out", default=None, help="output PNG (default per view: "
                     + ", ".join(f"{k}: {v}" for k, v in DEFAULT_OUT.items()) + ")")
    visualize_motion.add_arguments(pca)
    visualize_predictions.add_arguments(parser.add_argument_group("--what predictions"))


def main(args, gin_args) -> int:
    return VIEWS[args.what](args)
