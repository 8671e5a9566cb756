"""Metrics: closed forms and hand-worked cases; accumulators apply the reference reductions."""

import math
import re

import numpy as np
import pytest
import torch

from readouts import metrics
from readouts.accumulators import (AbsRelAccumulator, BoxIoUAccumulator, PoseErrorAccumulator,
                                   TapVidAccumulator, Top1Accumulator)
from readouts.tapvid import THRESHOLDS, compute_tapvid_metrics, query_to_raster, to_raster

TAPVID_KEYS = ({"occlusion_accuracy", "average_jaccard", "average_pts_within_thresh"}
               | {f"jaccard_{d}" for d in THRESHOLDS} | {f"pts_within_{d}" for d in THRESHOLDS})


def test_top1_hand_worked():
    logits = torch.tensor([[0.1, 2.0, 0.3], [1.0, 0.0, 0.5], [0.0, 0.0, 3.0]])
    assert metrics.top1_correct(logits, torch.tensor([1, 2, 2])).tolist() == [True, False, True]
    acc = Top1Accumulator()
    acc.update(logits, torch.tensor([1, 2, 2]))
    acc.update(logits[:1], torch.tensor([0]))
    assert acc.result()["top1"] == pytest.approx(2 / 4)


def test_abs_rel_hand_worked_and_zero_valid():
    pred = torch.tensor([1.0, 2.0, 3.0, 4.0])
    target = torch.tensor([2.0, 2.0, 0.0, 5.0])          # 0 = no measurement
    assert metrics.abs_rel(pred, target) == pytest.approx((0.5 + 0.0 + 0.2) / 3)
    valid = torch.tensor([True, False, True, True])
    assert metrics.abs_rel(pred, target, valid) == pytest.approx(0.7 / 2)
    assert math.isnan(metrics.abs_rel(pred, torch.zeros(4)))
    acc = AbsRelAccumulator()
    acc.update(pred, torch.zeros(4))                      # a frame without valid pixels
    assert math.isnan(acc.result()["abs_rel"])
    acc.update(pred, target)
    acc.update(torch.tensor([3.0]), torch.tensor([2.0]))  # pooled over pixels: (0.7 + 0.5) / 4
    assert acc.result()["abs_rel"] == pytest.approx(1.2 / 4)


def _pose(rotation, translation):
    return torch.cat([rotation, torch.as_tensor(translation, dtype=torch.float32)[:, None]], -1)[None]


def test_pose_error_closed_forms():
    eye = torch.eye(3)
    gt = _pose(eye, [0.0, 0.0, 0.0])
    assert metrics.pose_endpoint_error(gt, gt).item() == pytest.approx(0.0)
    # A pure translation error moves every corner by the same vector.
    off = _pose(eye, [0.3, 0.0, 0.4])
    assert metrics.pose_endpoint_error(off, gt).item() == pytest.approx(0.5)
    # Rotating by pi about the optical axis flips x and y: each corner moves 2 * sqrt(0.5).
    flip = _pose(torch.diag(torch.tensor([-1.0, -1.0, 1.0])), [0.0, 0.0, 0.0])
    assert metrics.pose_endpoint_error(flip, gt).item() == pytest.approx(math.sqrt(2), rel=1e-6)
    acc = PoseErrorAccumulator()
    acc.update(torch.cat([off, flip]), torch.cat([gt, gt]))
    assert acc.result()["pose_error"] == pytest.approx((0.5 + math.sqrt(2)) / 2)


def _one_track(pred_xy, pred_occ, query_t=0, gt_occ=None):
    t = len(pred_xy)
    gt_tracks = np.full((1, 1, t, 2), 10.0)
    gt_occluded = np.zeros((1, 1, t), bool) if gt_occ is None else np.asarray(gt_occ)[None, None]
    query = np.array([[[query_t, 10.0, 10.0]]])
    return compute_tapvid_metrics(query, gt_occluded, gt_tracks, np.asarray(pred_occ)[None, None],
                                  np.asarray(pred_xy, float)[None, None], "first")


def test_tapvid_hand_worked():
    """Frames 1-3 scored; frame 1 exact, frame 2 off by 3 px, frame 3 exact but predicted occluded."""
    out = _one_track([[10, 10], [10, 10], [13, 10], [10, 10]], [False, False, False, True])
    assert set(out) == TAPVID_KEYS and out["average_jaccard"].shape == (1,)
    assert out["occlusion_accuracy"][0] == pytest.approx(2 / 3)
    for d, within, jaccard in [(1, 2 / 3, 1 / 4), (2, 2 / 3, 1 / 4), (4, 1.0, 2 / 3),
                               (8, 1.0, 2 / 3), (16, 1.0, 2 / 3)]:
        assert out[f"pts_within_{d}"][0] == pytest.approx(within)
        assert out[f"jaccard_{d}"][0] == pytest.approx(jaccard)
    assert out["average_jaccard"][0] == pytest.approx(0.5)
    assert out["average_pts_within_thresh"][0] == pytest.approx(13 / 15)


@pytest.mark.parametrize("query_mode", ["first", "strided"])
def test_tapvid_perfect_prediction_scores_one(query_mode):
    rng = np.random.default_rng(0)
    b, n, t = 2, 5, 8
    tracks = rng.uniform(0, 256, (b, n, t, 2))
    occluded = rng.uniform(size=(b, n, t)) < 0.3
    query_t = rng.integers(0, t - 1, (b, n))
    occluded[np.arange(b)[:, None], np.arange(n)[None], query_t] = False
    occluded[..., -1] = False   # every track has a scored visible frame in both modes
    rows = np.take_along_axis(tracks, query_t[..., None, None], axis=2)[:, :, 0]
    query = np.concatenate([query_t[..., None], rows[..., ::-1]], axis=-1)   # [t, y, x]
    out = compute_tapvid_metrics(query, occluded, tracks, occluded, tracks, query_mode)
    for key in TAPVID_KEYS:
        np.testing.assert_allclose(out[key], 1.0)
    trackwise = compute_tapvid_metrics(query, occluded, tracks, occluded, tracks, query_mode,
                                       get_trackwise_metrics=True)
    assert trackwise["average_jaccard"].shape == (b, n)


def test_tapvid_query_modes_score_different_frames():
    """Only frame 0 is wrong: 'first' with the query at frame 1 never scores it, 'strided' does."""
    pred = np.array([[[[50.0, 50.0], [10, 10], [10, 10]]]])
    gt = np.full((1, 1, 3, 2), 10.0)
    occ = np.zeros((1, 1, 3), bool)
    query = np.array([[[1, 10.0, 10.0]]])
    assert compute_tapvid_metrics(query, occ, gt, occ, pred, "first")["average_jaccard"][0] == 1.0
    # strided scores frames 0 and 2: TP 1, GT visible 2, FP 1 (frame 0, too far) -> 1 / 3.
    strided = compute_tapvid_metrics(query, occ, gt, occ, pred, "strided")
    assert strided["average_jaccard"][0] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="query_mode"):
        compute_tapvid_metrics(query, occ, gt, occ, pred, "last")


def test_tapvid_all_occluded_tracks_are_defined_or_documented_nan():
    occ = np.array([[[False, True, True]]])
    # An all-occluded (after the query) track beside a perfect one: the video is well defined.
    gt = np.full((1, 2, 3, 2), 10.0)
    both_occ = np.concatenate([occ, np.zeros_like(occ)], axis=1)
    query = np.array([[[0, 10.0, 10.0], [0, 10.0, 10.0]]])
    out = compute_tapvid_metrics(query, both_occ, gt, both_occ, gt, "first")
    assert out["average_jaccard"][0] == 1.0 and out["occlusion_accuracy"][0] == 1.0
    # A video with nothing visible to score: occlusion accuracy 1, the rest NaN (0 / 0) as in
    # the reference; the accumulator skips that video.
    alone = compute_tapvid_metrics(query[:, :1], occ, gt[:, :1], occ, gt[:, :1], "first")
    assert alone["occlusion_accuracy"][0] == 1.0 and np.isnan(alone["average_jaccard"][0])
    acc = TapVidAccumulator()
    acc.update(query[:, :1], occ, gt[:, :1], occ, gt[:, :1])
    assert np.isnan(acc.result()["average_jaccard"])
    acc.update(query, both_occ, gt, both_occ, gt)
    result = acc.result()
    assert result["average_jaccard"] == 1.0 and result["num_videos"] == 2.0


def test_tapvid_accumulator_is_a_mean_over_videos():
    out_a = _one_track([[10, 10], [10, 10], [13, 10], [10, 10]], [False, False, False, True])
    acc = TapVidAccumulator()
    gt = np.full((1, 1, 4, 2), 10.0)
    query, occ = np.array([[[0, 10.0, 10.0]]]), np.zeros((1, 1, 4), bool)
    acc.update(query, occ, gt, np.array([[[False, False, False, True]]]),
               np.array([[[[10, 10], [10, 10], [13, 10], [10, 10]]]], float))
    acc.update(query, occ, gt, occ, gt)
    assert acc.result()["average_jaccard"] == pytest.approx((out_a["average_jaccard"][0] + 1) / 2)


def test_raster_conversion():
    xy = np.array([[32.0, 16.0]])
    np.testing.assert_allclose(to_raster(xy, (64, 128)), [[64.0, 64.0]])
    np.testing.assert_allclose(query_to_raster(np.array([[3.0, 16.0, 32.0]]), (64, 128)),
                               [[3.0, 64.0, 64.0]])


def test_box_iou_hand_worked_excludes_first_frame():
    gt = torch.tensor([[0.0, 0.0, 0.5, 0.5]] * 4)
    pred = torch.tensor([[0.5, 0.5, 1.0, 1.0],        # frame 0: ignored (query frame)
                         [0.0, 0.0, 0.5, 0.5],        # IoU 1
                         [0.25, 0.0, 0.75, 0.5],      # IoU 0.125 / 0.375 = 1/3
                         [0.9, 0.9, 1.0, 1.0]])       # frame 3: no GT box
    valid = torch.tensor([True, True, True, False])
    pred, gt, valid = pred[None, None], gt[None, None], valid[None, None]
    assert metrics.box_mean_iou(pred, gt, valid) == pytest.approx((1 + 1 / 3) / 2)
    # Swapped corners measure the box they span.
    swapped = pred[..., [2, 3, 0, 1]]
    assert metrics.box_mean_iou(swapped, gt, valid) == pytest.approx((1 + 1 / 3) / 2)
    assert math.isnan(metrics.box_mean_iou(pred, gt, torch.zeros_like(valid)))
    acc = BoxIoUAccumulator()
    acc.update(pred, gt, valid)
    acc.update(gt, gt, torch.ones_like(valid))       # 3 more perfect pairs
    assert acc.result()["mean_iou"] == pytest.approx((1 + 1 / 3 + 3) / 5)


def test_box_iou_ignores_degenerate_unscored_pairs():
    # A padded track (all-zero boxes on both sides) has IoU 0/0; being unscored, it must not
    # turn the mean into NaN.
    gt = torch.tensor([[[[0.0, 0.0, 0.5, 0.5]] * 2, [[0.0, 0.0, 0.0, 0.0]] * 2]])   # (1, 2, 2, 4)
    valid = torch.tensor([[[True, True], [False, False]]])
    assert metrics.box_mean_iou(gt.clone(), gt, valid) == pytest.approx(1.0)


def test_sub_metre_depths_and_a_single_valid_pixel_count():
    """Depths below 1 m are valid pixels (only target <= 0 means no measurement), and one valid
    pixel is enough for a value."""
    pred, target = torch.tensor([0.3, 0.9, 5.0]), torch.tensor([0.5, 0.6, 0.0])
    assert metrics.abs_rel(pred, target) == pytest.approx((0.4 + 0.5) / 2)
    assert metrics.abs_rel(pred[:1], target[:1]) == pytest.approx(0.4)
    gt = torch.tensor([[[[0.0, 0.0, 0.5, 0.5]] * 2]])                    # (1, 1, 2, 4)
    pred_box = torch.tensor([[[[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.25]]]])
    assert metrics.box_mean_iou(pred_box, gt, torch.ones(1, 1, 2, dtype=torch.bool)) == 0.5


def test_pose_error_with_rotation_and_translation_hand_worked():
    """One corner p = (1, 0, 1); pred [R | t] with R = diag(-1, -1, 1), t = (0.1, 0, 0.5):
    q = R^T (p - t) = (-0.9, 0, 0.5) against the identity's q = p: |(1.9, 0, 0.5)|."""
    gt = _pose(torch.eye(3), [0.0, 0.0, 0.0])
    pred = _pose(torch.diag(torch.tensor([-1.0, -1.0, 1.0])), [0.1, 0.0, 0.5])
    corner = torch.tensor([[1.0, 0.0, 1.0]])
    error = metrics.pose_endpoint_error(pred, gt, corners=corner)
    assert error.shape == (1,) and error.item() == pytest.approx(math.hypot(1.9, 0.5), rel=1e-6)
    # A rotation about y mixes the translation into x and z: R = Ry(90 deg), t = (0, 0, 0.5);
    # R^T (x, y, z) = (-z, y, x), so q = R^T (1, 0, 0.5) = (-0.5, 0, 1) vs p: |(1.5, 0, 0)|.
    ry = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    error = metrics.pose_endpoint_error(_pose(ry, [0.0, 0.0, 0.5]), gt, corners=corner)
    assert error.item() == pytest.approx(1.5, rel=1e-6)


def test_tapvid_thresholds_are_strict():
    """As in the reference, a point exactly d pixels away is not within d."""
    out = _one_track([[10, 10], [11, 10]], [False, False])
    assert out["pts_within_1"][0] == 0.0 and out["pts_within_2"][0] == 1.0
    assert out["jaccard_1"][0] == pytest.approx(0.0) and out["jaccard_2"][0] == 1.0


def test_tapvid_bad_shapes_are_named_and_tensors_with_grad_are_accepted():
    q, occ, tracks = np.zeros((1, 2, 3)), np.zeros((1, 2, 4), bool), np.zeros((1, 2, 4, 2))
    for bad_q, bad_tracks in [(q, tracks[..., :1]), (q, tracks[0]), (q[..., :2], tracks)]:
        with pytest.raises(ValueError, match=r"expected query_points \(b, n, 3\).*received "
                                             + re.escape(str(bad_q.shape))):
            compute_tapvid_metrics(bad_q, occ, bad_tracks, occ, bad_tracks, "first")
    # Predictions straight from a head (requires_grad, possibly on a GPU) are read as arrays.
    pred = torch.zeros(1, 2, 4, 2, requires_grad=True)
    out = compute_tapvid_metrics(torch.as_tensor(q), torch.as_tensor(occ), torch.as_tensor(tracks),
                                 torch.as_tensor(occ), pred, "first")
    np.testing.assert_allclose(out["average_jaccard"], 1.0)
    assert TapVidAccumulator().result() == {"num_videos": 0.0}


def test_pose_error_follows_the_prediction_device():
    """The cube corners move to the poses' device (the meta device stands in for a GPU)."""
    pose = torch.empty(2, 3, 4, device="meta")
    error = metrics.pose_endpoint_error(pose, pose)
    assert error.shape == (2,) and error.device.type == "meta"
