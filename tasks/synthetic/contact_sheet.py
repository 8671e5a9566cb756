"""A contact sheet of the synthetic world: a few items of every analog, with labels,
depth, point tracks and boxes drawn, plus the brick-wall probe.

    python -m tasks.synthetic.contact_sheet --out docs/synthetic_contact_sheet.png
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tasks.synthetic import analogs  # noqa: E402
from tasks.synthetic.brick_wall import brick_wall_clip  # noqa: E402
from tasks.synthetic.dataset import clip_generator  # noqa: E402

COLUMNS = 6  # two items x (first, middle, last frame)


def _panel(ax, image, title=""):
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=6, pad=2)


def draw(out: str, image_size: int = 64, seed: int = 0) -> None:
    names = list(analogs.ANALOGS)
    fig, axes = plt.subplots(len(names) + 1, COLUMNS, figsize=(COLUMNS * 1.25, (len(names) + 1) * 1.35))
    for row, name in enumerate(names):
        analog = analogs.get(name)
        items = analogs.render_items(analog, [clip_generator(name, "sheet", seed, i) for i in range(2)],
                                     image_size, 17)
        for k, item in enumerate(items):
            video = item["video"]
            frames = [0] if analog.image else [0, len(video) // 2, len(video) - 1]
            for j in range(3):
                ax = axes[row, 3 * k + j]
                if j >= len(frames):  # image analogs: room for the label only
                    ax.axis("off")
                    continue
                t = frames[j]
                title = f"{name} [{analog.real}]" if (k == 0 and j == 0) else ""
                if "label" in item and j == 0:
                    label = int(item["label"])
                    extra = f" {analogs.MOTION_CLASSES[label]}" if name == "motion" else ""
                    title = (title + f"\nlabel {label}{extra}").strip()
                if name == "depth" and j == 2:
                    _panel(ax, item["depth"][t], "depth (m)" if k == 0 else "")
                    continue
                _panel(ax, video[t], title)
                if name == "point_tracks":
                    vis = ~item["occluded"][:, t]
                    pts = item["target_points"][:, t] - 0.5  # pixel centres -> imshow coordinates
                    ax.scatter(pts[vis, 0], pts[vis, 1], s=2, c="yellow", linewidths=0)
                    ax.scatter(pts[~vis, 0], pts[~vis, 1], s=2, c="red", linewidths=0)
                    ax.set_xlim(-0.5, image_size - 0.5)
                    ax.set_ylim(image_size - 0.5, -0.5)
                if name == "box_tracks":
                    for n in np.nonzero(item["box_valid"][:, t])[0]:
                        x0, y0, x1, y1 = item["boxes"][n, t] * image_size - 0.5
                        ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False,
                                                   edgecolor=plt.cm.tab10(n % 10), linewidth=0.7))
                if name == "pose" and j == 2:
                    ax.set_title(f"|t| = {np.linalg.norm(item['pose'][:, 3]):.2f} m", fontsize=6, pad=2)
    brick = brick_wall_clip(image_size)
    video = brick["video"].numpy()
    for j, t in enumerate([0, 8, 16]):
        _panel(axes[-1, j], video[t], "brick-wall probe (Fig. 4)" if j == 0 else f"frame {t}")
    _panel(axes[-1, 3], brick["frozen_mask"].numpy(), "frozen region")
    _panel(axes[-1, 4], brick["moving_mask"].numpy(), "moving subset")
    _panel(axes[-1, 5], np.abs(video[16].astype(int) - video[0].astype(int)).sum(-1), "|frame 16 - 0|")
    fig.tight_layout(pad=0.3)
    fig.savefig(out, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/synthetic_contact_sheet.png")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    draw(args.out, args.image_size, args.seed)


if __name__ == "__main__":
    main()
