"""Evaluation metrics of the paper (3.4): pure functions of predictions and ground truth.

Each function returns per-example values (or sums and counts) so the accumulators in
`readouts/accumulators.py` can apply the reference reduction over a whole split. Point
tracking (TAP-Vid) lives in `readouts/tapvid.py`.
"""

from __future__ import annotations

import torch
from einops import einsum, pack, unpack

# Corners of the virtual cube for the pose metric, in first-camera coordinates (x right,
# y down, z forward, metres): side 1, front face 1 m in front of the camera (spec 4.2 default).
CUBE_CORNERS = torch.tensor([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5)
                             for z in (1.0, 2.0)])


def top1_correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(b, k) logits, (b,) labels -> (b,) bool: argmax_k logits == label.

    Top-1 accuracy = mean over examples. Ties go to the lowest class index (torch.argmax).
    """
    return logits.argmax(dim=-1) == labels.long()


def abs_rel_terms(pred: torch.Tensor, target: torch.Tensor,
                  valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum and count of the absolute relative error over valid pixels.

    pred, target: (...) depth in metres; valid: (...) bool, default target > 0 (ScanNet's 0 =
    no measurement); pixels with target <= 0 are never valid.
    Returns (sum_i |pred_i - target_i| / target_i, |V|) as 0-d tensors; AbsRel = sum / |V|.
    """
    mask = target > 0
    if valid is not None:
        mask = mask & valid.bool()
    safe = torch.where(mask, target, torch.ones_like(target))
    rel = torch.where(mask, (pred - target).abs() / safe, torch.zeros_like(target))
    return rel.sum(), mask.sum()


def abs_rel(pred: torch.Tensor, target: torch.Tensor,
            valid: torch.Tensor | None = None) -> float:
    """AbsRel = (1 / |V|) sum_{i in V} |d_hat_i - d_i| / d_i. NaN when |V| = 0 (no valid pixel)."""
    total, count = abs_rel_terms(pred, target, valid)
    return float(total / count) if count > 0 else float("nan")


def pose_endpoint_error(pred: torch.Tensor, target: torch.Tensor,
                        corners: torch.Tensor | None = None) -> torch.Tensor:
    """Mean end-point error of 8 virtual cube corners. pred, target: (b, 3, 4) -> (b,).

    Poses follow tasks/task.py: [R | t] maps last-camera coordinates to first-camera ones. The
    corners p_k (CUBE_CORNERS, in front of the first camera, first-camera coordinates) are
    mapped into the last camera by each pose's inverse, q = R^T (p - t), and
      error = (1/8) sum_k || q_k(target) - q_k(pred) ||_2   (units of t, metres).
    """
    corners = (CUBE_CORNERS if corners is None else corners).to(pred)

    def to_last_camera(pose: torch.Tensor) -> torch.Tensor:
        rotation, translation = pose[:, :, :3], pose[:, :, 3]
        # q = R^T (p - t), written per row vector: (p - t) @ R.
        return einsum(corners[None] - translation[:, None], rotation, "b k i, b i j -> b k j")

    return (to_last_camera(target) - to_last_camera(pred)).norm(dim=-1).mean(dim=-1)


def box_ious(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of matched boxes. pred, target: (..., n, 4) (x0, y0, x1, y1) -> (..., n).

    torchvision.ops.box_iou (pairwise) evaluated on the diagonal, per leading row so the
    pairwise matrix stays small. Predicted corners are sorted per axis first, so a box whose
    corners come out swapped is measured as the box they span (never a negative area).
    """
    # Imported here: torchvision costs seconds to import and only box tracking needs it.
    from torchvision.ops import box_iou

    pred = torch.cat([torch.minimum(pred[..., :2], pred[..., 2:]),
                      torch.maximum(pred[..., :2], pred[..., 2:])], dim=-1)
    flat_pred, rows = pack([pred], "* n c")
    flat_target, _ = pack([target], "* n c")
    ious = torch.stack([box_iou(p, g).diagonal() for p, g in zip(flat_pred, flat_target)])
    return unpack(ious, rows, "* n")[0]


def box_iou_terms(pred: torch.Tensor, target: torch.Tensor,
                  valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum and count of IoU over (track, frame) pairs with a GT box, excluding frame 0.

    pred, target: (b, n, T, 4) normalised (x0, y0, x1, y1); valid: (b, n, T) bool. The first
    frame holds the query box and is not scored (paper 3.4). mean IoU = sum / count.
    """
    ious = box_ious(pred.float(), target.float())
    mask = valid.bool().clone()
    mask[..., 0] = False
    # where, not a product: an unscored pair of degenerate boxes has IoU 0/0 = NaN.
    return torch.where(mask, ious, torch.zeros_like(ious)).sum(), mask.sum()


def box_mean_iou(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> float:
    """mean IoU = (1 / |P|) sum_{(n, t) in P, t > 0} IoU(pred_nt, gt_nt); NaN when P is empty."""
    total, count = box_iou_terms(pred, target, valid)
    return float(total / count) if count > 0 else float("nan")
