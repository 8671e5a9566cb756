"""Prediction overlays (`walt-probe visualize --what predictions RUN_DIR...`; paper Figs. 10-12).

For a few clips of the reported split, the ground truth next to each run's kept prediction
(predictions.npz, probing/kept.py), one row per clip:
  depth           the clip's frame, true depth, each run's predicted depth (same colour scale)
  point tracks    trails over the clip on its last frame: truth (white where visible), each
                  run's prediction coloured by predicted visibility (green visible, red hidden)
  box tracks      the first and a later frame with true boxes (white) and predicted (coloured)
  classification  the middle frame, the true class and each run's top-5 classes with softmax p
  camera pose     first and last frame with each run's rotation and translation error
The clips are read from the runs' dataset (the first run's operative_config.gin); every run must
be of the same task and split. Writes a PNG grid, and with --gif an animated GIF of the first
clip's frames with the point or box overlays (Pillow).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def add_arguments(group) -> None:
    group.add_argument("--examples", type=int, default=3, help="clips to draw (default: %(default)s)")
    group.add_argument("--gif", action="store_true", help="also write an animated GIF of clip 0")


def _load_runs(paths):
    from probing.kept import read_config, read_predictions

    runs = []
    for p in paths:
        config = read_config(p)
        runs.append((Path(p), config, read_predictions(p)))
    tasks = {(c["task"], c["split"]) for _, c, _ in runs}
    if len(tasks) != 1:
        raise ValueError(f"the runs are of different tasks or splits {sorted(tasks)}; draw one "
                         f"task's runs together")
    return runs


def _dataset(run_dir: Path, split: str):
    """The split's dataset of the run's task, built from its operative_config.gin."""
    import gin

    from runners import configurables  # noqa: F401  registers every name
    from runners import gin_setup, trial

    gin_setup.parse(gin_setup.GinArgs(files=(str(run_dir / "operative_config.gin"),)))
    try:
        task = gin.get_configurable("Probe")().task
    finally:
        gin.clear_config()
    return task.split(split), trial


def _label(run_dir: Path, config: dict) -> str:
    return f"{run_dir.name}\nblock {config['block']} t={config['t']}"


def _trails(ax, xy, visible, colours, lw=1.0):
    """Trails (q, T, 2) [x, y] pixels; visible (q, T) bool picks each segment's colour."""
    for q in range(xy.shape[0]):
        for s in range(xy.shape[1] - 1):
            ax.plot(xy[q, s:s + 2, 0], xy[q, s:s + 2, 1], color=colours[bool(visible[q, s + 1])],
                    linewidth=lw)


def _draw_points(ax, frame, truth, pred, size):
    h, w = size
    ax.imshow(frame)
    ax.set_xlim(0, w), ax.set_ylim(h, 0)  # trails that leave the frame are clipped, not zoomed out
    if pred is None:
        _trails(ax, truth["target_points"], ~truth["occluded"], {True: "white", False: (1, 1, 1, 0.2)})
        return
    import torch

    from readouts.tracking import predicted_visible
    xy = pred["pred_values"] * np.array([w, h])
    visible = predicted_visible(torch.as_tensor(pred["pred_logits"])).numpy()
    _trails(ax, xy, visible, {True: "lime", False: "red"})


def _draw_boxes(ax, frame, boxes, valid, size, colour):
    from matplotlib.patches import Rectangle

    h, w = size
    ax.imshow(frame)
    for n in range(len(boxes)):
        if valid[n]:
            x0, y0, x1, y1 = boxes[n] * np.array([w, h, w, h])
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color=colour, lw=1.2))


def _rotation_error_deg(a, b) -> float:
    r = a[:3, :3].T @ b[:3, :3]
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))))


def show_predictions(args) -> int:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not args.runs:
        raise SystemExit("walt-probe visualize --what predictions: give one or more RUN_DIRs "
                         "(probe run folders with predictions.npz)")
    runs = _load_runs(args.runs)
    first_dir, first_config, first = runs[0]
    dataset, _ = _dataset(first_dir, first_config["split"])
    rows = min(args.examples, len(first["index"]))
    keys = set(first)
    kind = ("depth" if "pred_depth" in keys else "points" if "target_points" in keys else
            "boxes" if "boxes" in keys else "pose" if "pred_pose" in keys else "classes")
    cols = 2 + len(runs)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows), layout="constrained",
                             squeeze=False)
    gif_frames = []
    for r in range(rows):
        idx = int(first["index"][r])
        video = np.asarray(dataset[idx]["video"])                          # (T, H, W, 3)
        size = video.shape[1:3]
        mid = video[len(video) // 2]
        preds = []
        for run_dir, config, p in runs:
            at = np.nonzero(p["index"] == idx)[0]
            preds.append({k: (v[at[0]] if v.ndim and v.shape[0] == len(p["index"]) else v)
                          for k, v in p.items()} if len(at) else None)
        truth = {k: v[r] for k, v in first.items() if not k.startswith("pred_") and v.ndim
                 and v.shape[0] == len(first["index"])}
        axes[r, 0].imshow(mid)
        axes[r, 0].set_title(f"clip {idx}", fontsize=8)
        if kind == "depth":
            true = truth["depth"][len(truth["depth"]) // 2]
            vmin, vmax = float(true[true > 0].min()), float(true.max())
            axes[r, 1].imshow(true, cmap="magma_r", vmin=vmin, vmax=vmax)
            for c, p in enumerate(preds, start=2):
                if p is not None:
                    d = p["pred_depth"][len(p["pred_depth"]) // 2]
                    axes[r, c].imshow(d, cmap="magma_r", vmin=vmin, vmax=vmax)
        elif kind == "points":
            _draw_points(axes[r, 1], video[-1], truth, None, size)
            for c, p in enumerate(preds, start=2):
                if p is not None:
                    _draw_points(axes[r, c], video[-1], truth, p, size)
        elif kind == "boxes":
            later = len(video) - 1
            _draw_boxes(axes[r, 1], video[later], truth["boxes"][:, later], truth["box_valid"][:, later],
                        size, "white")
            for c, p in enumerate(preds, start=2):
                if p is not None:
                    _draw_boxes(axes[r, c], video[later], p["pred_values"][:, later],
                                truth["box_valid"][:, 0], size, f"C{c}")
        elif kind == "pose":
            axes[r, 1].imshow(video[-1])
            for c, p in enumerate(preds, start=2):
                if p is not None:
                    axes[r, c].imshow(video[-1])
                    rot = _rotation_error_deg(truth["pose"], p["pred_pose"])
                    trans = float(np.linalg.norm(truth["pose"][:, 3] - p["pred_pose"][:, 3]))
                    axes[r, c].set_xlabel(f"rot {rot:.1f}°  trans {trans:.2f} m", fontsize=8)
        else:
            axes[r, 1].axis("off")
            axes[r, 1].text(0.05, 0.5, f"true class {int(truth['label'])}", fontsize=10)
            for c, p in enumerate(preds, start=2):
                if p is not None:
                    z = p["pred_logits"] - p["pred_logits"].max()
                    prob = np.exp(z) / np.exp(z).sum()
                    top = np.argsort(-prob)[:5]
                    lines = [("> " if k == int(truth["label"]) else "  ") + f"{k}: {prob[k]:.2f}"
                             for k in top]
                    axes[r, c].axis("off")
                    axes[r, c].text(0.05, 0.95, "top-5\n" + "\n".join(lines), fontsize=8,
                                    family="monospace", va="top")
        if r == 0:
            axes[0, 1].set_title("truth", fontsize=8)
            for c, (run_dir, config, _) in enumerate(runs, start=2):
                axes[0, c].set_title(_label(run_dir, config), fontsize=8)
        if r == 0 and args.gif and kind in ("points", "boxes"):
            gif_frames = _gif_frames(video, truth, preds[0], kind, size)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"{first_config['task']} ({first_config['split']}): truth and kept predictions",
                 fontsize=10)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")
    if gif_frames:
        from PIL import Image
        gif = out.with_suffix(".gif")
        images = [Image.fromarray(f) for f in gif_frames]
        images[0].save(gif, save_all=True, append_images=images[1:], duration=120, loop=0)
        print(f"wrote {gif}")
    return 0


def _gif_frames(video, truth, pred, kind, size) -> list:
    """Frames (T, h, w, 3) uint8 of clip 0 with the first run's overlay drawn per frame."""
    import matplotlib.pyplot as plt

    frames = []
    for f in range(len(video)):
        fig, ax = plt.subplots(figsize=(3, 3), dpi=80)
        if kind == "points" and pred is not None:
            _draw_points(ax, video[f], {k: v[:, :f + 1] if k in ("target_points", "occluded") else v
                                        for k, v in truth.items()},
                         {k: v[:, :f + 1] if k in ("pred_values", "pred_logits") else v
                          for k, v in pred.items()}, size)
        elif pred is not None:
            _draw_boxes(ax, video[f], pred["pred_values"][:, f], truth["box_valid"][:, 0], size, "lime")
        ax.axis("off")
        fig.canvas.draw()
        frames.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
        plt.close(fig)
    return frames
