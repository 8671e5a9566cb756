"""What a pretraining run leaves for people to look at: the loss curve and contact sheets (PNG),
the run record (JSON), and FLOP counts for model FLOP utilisation.

All files are written atomically (temp file in the same folder + os.replace).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from walt.checkpoint import write_text_atomic


def _replace_into(path: Path, write: Callable[[Path], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: Path, obj) -> Path:
    write_text_atomic(Path(path), json.dumps(obj, indent=2, sort_keys=True, default=str))
    return Path(path)


def contact_sheet(rows: Sequence[torch.Tensor], path: Path, *, gap: int = 2) -> Path:
    """Writes a PNG grid: one row per entry of `rows`, frames left to right.

    rows: each uint8 (T, H, W, 3) (all rows the same H and W; shorter rows are padded white).
    """
    from PIL import Image

    if not rows:
        raise ValueError("contact_sheet needs at least one row")
    h, w = rows[0].shape[1:3]
    cols = max(r.shape[0] for r in rows)
    sheet = np.full((len(rows) * (h + gap) - gap, cols * (w + gap) - gap, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, frame in enumerate(row.cpu().numpy()):
            sheet[i * (h + gap): i * (h + gap) + h, j * (w + gap): j * (w + gap) + w] = frame
    # Upscale small frames (64 x 64) so the sheet is legible without zooming.
    scale = max(1, 256 // h)
    img = Image.fromarray(sheet).resize((sheet.shape[1] * scale, sheet.shape[0] * scale), Image.NEAREST)
    return _replace_into(path, lambda p: img.save(p, format="PNG"))


def loss_curve(history: dict, path: Path, *, title: str) -> Path:
    """Training loss per step (light) and its moving average (dark), log y, to a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.asarray(history["step"])
    loss = np.asarray(history["loss"], dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    if len(loss):
        ax.plot(steps, loss, color="tab:blue", alpha=0.25, lw=0.8, label="per step")
        k = max(1, min(len(loss) // 20, 200))
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, color="tab:blue", lw=1.6, label=f"mean of {k}")
        if (loss > 0).all():
            ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    out = _replace_into(path, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
    return out


def count_training_flops(step_fn: Callable[[], torch.Tensor]) -> int:
    """FLOPs of one forward + backward, counted by torch's FlopCounterMode (matmuls, convs, SDPA).

    step_fn: runs the forward pass and returns the scalar loss; its gradients are discarded by
    the caller (zero_grad) after this count.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step_fn().backward()
    return int(counter.get_total_flops())


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({os.cpu_count()} cores)"
