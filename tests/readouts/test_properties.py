"""Property tests (hypothesis) of the readout metrics: invariances a correct metric must have.

Procrustes returns a rotation; TAP-Vid metrics do not depend on the order of points or videos,
on the frame resolution the tracks were measured in, or on a common shift; per-split results do
not depend on how the split is cut into batches. Few, tiny examples: seconds in all.
"""

import math

import numpy as np
import pytest
import roma
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from readouts import metrics
from readouts.accumulators import (AbsRelAccumulator, BoxIoUAccumulator, PoseErrorAccumulator,
                                   TapVidAccumulator, Top1Accumulator)
from readouts.pose import special_procrustes
from readouts.tapvid import THRESHOLDS, compute_tapvid_metrics, query_to_raster, to_raster

FAST = settings(max_examples=20, deadline=None)
seeds = st.integers(0, 2 ** 31 - 1)


def approx(value):
    return pytest.approx(value, rel=1e-9, abs=1e-12)


def assert_same(a: dict, b: dict):
    """Equal metric dicts, NaN == NaN (a video with nothing to score is NaN on both sides)."""
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-12, atol=0, err_msg=key)


# --- Procrustes --------------------------------------------------------------------------------

@FAST
@given(seed=seeds, lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
       scale=st.floats(1e-2, 1e2))
def test_procrustes_returns_the_nearest_rotation(seed, lead, scale):
    gen = torch.Generator().manual_seed(seed)
    m = scale * torch.randn(*lead, 3, 3, generator=gen, dtype=torch.float64)
    r = special_procrustes(m)
    assert r.shape == m.shape
    eye = torch.eye(3, dtype=torch.float64).expand_as(r)
    torch.testing.assert_close(r.transpose(-1, -2) @ r, eye)
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(lead, dtype=torch.float64))
    torch.testing.assert_close(special_procrustes(r), r)                       # idempotent
    # Left-equivariant: rotating the input rotates the answer.
    q = roma.random_rotmat(lead, dtype=torch.float64)
    torch.testing.assert_close(special_procrustes(q @ m), q @ r)
    # Nearest in Frobenius norm: no random rotation is closer.
    other = roma.random_rotmat(lead, dtype=torch.float64)
    assert bool(((m - r).square().sum((-1, -2)) <= (m - other).square().sum((-1, -2)) + 1e-9).all())


# --- TAP-Vid ----------------------------------------------------------------------------------

def random_tapvid(seed: int, b: int, n: int, t: int, spread: float, grid: float = 8.0):
    """Random query/track arrays on a 1/grid pixel lattice (exact under shifts and powers of 2).

    Predictions are the truth plus an offset of about `spread` pixels, so the thresholds split
    them; occlusion flags are random on both sides; each query frame is visible.
    """
    rng = np.random.default_rng(seed)
    gt = np.round(rng.uniform(0, 256, (b, n, t, 2)) * grid) / grid
    pred = gt + np.round(rng.normal(0, spread, gt.shape) * grid) / grid
    gt_occ = rng.uniform(size=(b, n, t)) < 0.3
    pred_occ = rng.uniform(size=(b, n, t)) < 0.3
    query_t = rng.integers(0, t, (b, n))
    gt_occ[np.arange(b)[:, None], np.arange(n)[None], query_t] = False
    rows = np.take_along_axis(gt, query_t[..., None, None], axis=2)[:, :, 0]
    query = np.concatenate([query_t[..., None], rows[..., ::-1]], axis=-1)   # [t, y, x]
    return query, gt_occ, gt, pred_occ, pred


tapvid_cases = st.builds(random_tapvid, seed=seeds, b=st.integers(1, 3), n=st.integers(1, 6),
                         t=st.integers(2, 6), spread=st.sampled_from([0.5, 3.0, 12.0]))
modes = st.sampled_from(["first", "strided"])


@FAST
@given(case=tapvid_cases, mode=modes, seed=seeds)
def test_tapvid_is_invariant_to_the_order_of_points_and_videos(case, mode, seed):
    query, gt_occ, gt, pred_occ, pred = case
    b, n = gt_occ.shape[:2]
    rng = np.random.default_rng(seed)
    points, videos = rng.permutation(n), rng.permutation(b)
    out = compute_tapvid_metrics(*case, mode)
    shuffled = tuple(x[:, points] for x in case)
    assert_same(compute_tapvid_metrics(*shuffled, mode), out)
    reordered = tuple(x[videos] for x in case)
    assert_same(compute_tapvid_metrics(*reordered, mode), {k: v[videos] for k, v in out.items()})
    # Trackwise values follow their track, and each video's values are its own: scoring the
    # videos one at a time gives the same numbers.
    track = compute_tapvid_metrics(*case, mode, get_trackwise_metrics=True)
    assert_same(compute_tapvid_metrics(*shuffled, mode, get_trackwise_metrics=True),
                {k: v[:, points] for k, v in track.items()})
    for i in range(b):
        assert_same(compute_tapvid_metrics(*(x[i:i + 1] for x in case), mode),
                    {k: v[i:i + 1] for k, v in out.items()})


@FAST
@given(case=tapvid_cases, mode=modes, trackwise=st.booleans())
def test_tapvid_averages_are_means_over_thresholds(case, mode, trackwise):
    out = compute_tapvid_metrics(*case, mode, get_trackwise_metrics=trackwise)
    shape = case[1].shape[:2] if trackwise else case[1].shape[:1]
    for key, value in out.items():
        assert value.shape == shape, key
    for name, part in [("average_jaccard", "jaccard"), ("average_pts_within_thresh", "pts_within")]:
        by_hand = sum(out[f"{part}_{d}"] for d in THRESHOLDS) / len(THRESHOLDS)
        np.testing.assert_allclose(out[name], by_hand, rtol=1e-12)
    # Fractions are fractions; jaccard can only grow with the threshold.
    for d in THRESHOLDS:
        for key in (f"jaccard_{d}", f"pts_within_{d}", "occlusion_accuracy"):
            finite = out[key][~np.isnan(out[key])]
            assert bool(((finite >= 0) & (finite <= 1)).all()), key
    for small, big in zip(THRESHOLDS, THRESHOLDS[1:]):
        a, b = out[f"jaccard_{small}"], out[f"jaccard_{big}"]
        keep = ~np.isnan(a)
        assert bool((a[keep] <= b[keep]).all())


@FAST
@given(case=tapvid_cases, mode=modes, height=st.sampled_from([32, 64, 96, 256]),
       width=st.sampled_from([32, 128, 160, 256]), zoom=st.sampled_from([0.5, 2.0, 4.0]))
def test_tapvid_on_the_raster_does_not_depend_on_the_frame_resolution(case, mode, height,
                                                                       width, zoom):
    """Tracks measured on an (H, W) frame and the same tracks on a (zH, zW) frame give the same
    raster coordinates, hence the same metrics (z a power of 2: exact in floating point)."""
    query, gt_occ, gt, pred_occ, pred = case
    frame = np.asarray([width / 256, height / 256])          # case is drawn on the raster
    qframe = np.asarray([1.0, height / 256, width / 256])

    def on_raster(z):
        size = (int(z * height), int(z * width))
        return (query_to_raster(query * qframe * z ** np.asarray([0, 1, 1]), size), gt_occ,
                to_raster(gt * frame * z, size), pred_occ, to_raster(pred * frame * z, size))

    assert_same(compute_tapvid_metrics(*on_raster(zoom), mode),
                compute_tapvid_metrics(*on_raster(1.0), mode))


@FAST
@given(case=tapvid_cases, mode=modes, shift=st.tuples(st.integers(-64, 64), st.integers(-64, 64)))
def test_tapvid_is_invariant_to_a_common_shift(case, mode, shift):
    query, gt_occ, gt, pred_occ, pred = case
    moved = (query + np.asarray([0, shift[1], shift[0]]), gt_occ, gt + np.asarray(shift), pred_occ,
             pred + np.asarray(shift))
    assert_same(compute_tapvid_metrics(*moved, mode), compute_tapvid_metrics(*case, mode))


# --- Other metrics ----------------------------------------------------------------------------

@FAST
@given(seed=seeds, scale=st.sampled_from([0.125, 0.5, 2.0, 8.0]))
def test_abs_rel_is_scale_free(seed, scale):
    """AbsRel is relative: metres or millimetres give the same value (depths below and above 1)."""
    gen = torch.Generator().manual_seed(seed)
    target = torch.empty(3, 5, dtype=torch.float64).uniform_(0.05, 4.0, generator=gen)
    target[0, 0] = 0.0                                                    # no measurement
    pred = target * torch.empty_like(target).uniform_(0.5, 1.5, generator=gen)
    assert metrics.abs_rel(scale * pred, scale * target) == approx(
        metrics.abs_rel(pred, target))
    by_hand = ((pred - target).abs() / target)[target > 0].mean()
    assert metrics.abs_rel(pred, target) == approx(float(by_hand))


@FAST
@given(seed=seeds, b=st.integers(1, 4))
def test_pose_error_with_equal_rotations_is_the_translation_error(seed, b):
    gen = torch.Generator().manual_seed(seed)
    rotation = special_procrustes(torch.randn(b, 3, 3, generator=gen, dtype=torch.float64))
    t_pred, t_gt = torch.randn(2, b, 3, 1, generator=gen, dtype=torch.float64)
    pred, gt = torch.cat([rotation, t_pred], -1), torch.cat([rotation, t_gt], -1)
    error = metrics.pose_endpoint_error(pred, gt)
    assert error.shape == (b,)
    torch.testing.assert_close(error, (t_pred - t_gt)[..., 0].norm(dim=-1))
    torch.testing.assert_close(metrics.pose_endpoint_error(gt, pred), error)   # symmetric


def random_boxes(gen: torch.Generator, *shape: int) -> torch.Tensor:
    """(*shape, 4) boxes (x0, y0, x1, y1) in [0, 1], spanned by two random corners each."""
    corners = torch.rand(*shape, 2, 2, generator=gen, dtype=torch.float64)   # (..., corner, xy)
    return torch.cat([corners.min(-2).values, corners.max(-2).values], -1)


@FAST
@given(seed=seeds, scale=st.sampled_from([0.25, 0.5, 2.0]),
       shift=st.tuples(st.sampled_from([-0.5, 0.0, 0.25]), st.sampled_from([-0.25, 0.0, 0.5])))
def test_box_iou_is_a_symmetric_similarity_invariant_fraction(seed, scale, shift):
    gen = torch.Generator().manual_seed(seed)
    pred, gt = random_boxes(gen, 2, 2, 3)
    iou = metrics.box_ious(pred, gt)
    assert iou.shape == (2, 3) and bool(((iou >= 0) & (iou <= 1)).all())
    torch.testing.assert_close(metrics.box_ious(gt, pred), iou)
    torch.testing.assert_close(metrics.box_ious(gt, gt), torch.ones_like(iou))
    offset = torch.tensor(shift * 2, dtype=torch.float64)
    torch.testing.assert_close(metrics.box_ious(scale * pred + offset, scale * gt + offset), iou)


# --- Accumulators: batching does not change a split's result ----------------------------------

@FAST
@given(seed=seeds, cuts=st.lists(st.integers(1, 7), max_size=3, unique=True))
def test_accumulators_do_not_depend_on_the_batching(seed, cuts):
    gen = torch.Generator().manual_seed(seed)
    n = 8
    logits, labels = torch.randn(n, 4, generator=gen), torch.randint(0, 4, (n,), generator=gen)
    depth = torch.rand(n, 3, 3, generator=gen) * 4
    depth_pred = depth + torch.randn(n, 3, 3, generator=gen) * 0.1
    poses = torch.randn(2, n, 3, 4, generator=gen, dtype=torch.float64)
    boxes = random_boxes(gen, 2, n, 2, 3)
    box_valid = torch.rand(n, 2, 3, generator=gen) < 0.7
    tap = random_tapvid(seed, n, 3, 4, spread=3.0)
    make = {
        "top1": (Top1Accumulator, (logits, labels)),
        "abs_rel": (AbsRelAccumulator, (depth_pred, depth)),
        "pose": (PoseErrorAccumulator, (poses[0], poses[1])),
        "iou": (BoxIoUAccumulator, (boxes[0], boxes[1], box_valid)),
        "tapvid": (TapVidAccumulator, tap),
    }
    edges = [0, *sorted(cuts), n]
    for name, (cls, args) in make.items():
        whole, pieces = cls(), cls()
        whole.update(*args)
        for lo, hi in zip(edges, edges[1:]):
            pieces.update(*(a[lo:hi] for a in args))
        a, b = whole.result(), pieces.result()
        assert set(a) == set(b), name
        # Box IoU is computed in float32 (box_iou_terms): summation order shows at 1e-8.
        rel = 1e-6 if name == "iou" else 1e-9
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=rel, nan_ok=True), (name, key)
        count_key = {"top1": "num_examples", "abs_rel": "num_pixels", "pose": "num_examples",
                     "iou": "num_boxes", "tapvid": "num_videos"}[name]
        expected = {"abs_rel": 9 * n, "iou": int(box_valid[..., 1:].sum())}.get(name, n)
        assert b[count_key] == expected, (name, count_key)


def test_pose_accumulator_mean_of_unequal_errors():
    """Two batches whose errors differ: the mean is over all examples (not the last batch)."""
    eye = torch.eye(3, dtype=torch.float64)
    gt = torch.cat([eye, torch.zeros(3, 1, dtype=torch.float64)], -1)[None]
    off = [torch.cat([eye, torch.tensor([[d], [0.0], [0.0]], dtype=torch.float64)], -1)[None]
           for d in (1.0, 2.0, 6.0)]
    acc = PoseErrorAccumulator()
    acc.update(torch.cat(off[:2]), torch.cat([gt, gt]))
    acc.update(off[2], gt)
    assert acc.result() == {"pose_error": approx(3.0), "num_examples": 3.0}
    assert math.isnan(PoseErrorAccumulator().result()["pose_error"])
