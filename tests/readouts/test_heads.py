"""Readout heads: shapes, bad-input errors, Procrustes, resampling, and one-batch overfitting."""

import pytest
import roma
import torch

from readouts import losses
from readouts.attentive import AttentiveReadout
from readouts.depth import DepthReadout
from readouts.layers import fourier_features
from readouts.pose import PoseReadout, first_last_frames, special_procrustes
from readouts.resample import cubic_resize_weights, resize_time
from readouts.tracking import TrackingReadout

D = 16
STEPS = 40          # "a few dozen" optimiser steps to overfit one batch
TRACK_SIZES = dict(latent_size=32, qkv_size=32, num_heads=2, mlp_size=64, num_layers=1,
                   num_fourier_bases=4)


def test_procrustes_is_a_rotation_and_fixes_rotations():
    torch.manual_seed(0)
    rotations = special_procrustes(torch.randn(64, 3, 3))
    eye = torch.eye(3).expand(64, 3, 3)
    assert torch.allclose(rotations @ rotations.transpose(-1, -2), eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(rotations), torch.ones(64), atol=1e-5)
    assert torch.allclose(special_procrustes(torch.eye(3)), torch.eye(3), atol=1e-6)
    r = roma.random_rotmat(8)
    assert torch.allclose(special_procrustes(r), r, atol=1e-5)
    # A reflection is projected onto a proper rotation (det +1), not returned as is.
    assert torch.linalg.det(special_procrustes(torch.diag(torch.tensor([1., 1., -1.])))) > 0


def test_fourier_features_layout():
    coords = torch.tensor([[0.5, 0.25]])
    code = fourier_features(coords, num_bases=3)
    angles = torch.pi * torch.tensor([0.5, 0.25, 1.0, 0.5, 2.0, 1.0])   # frequency-major
    assert torch.allclose(code[0], torch.cat([angles.sin(), angles.cos()]), atol=1e-6)


@pytest.mark.parametrize("t_in, t_out", [(5, 17), (17, 5), (1, 17), (4, 9)])
def test_resize_time_keeps_constants_and_rows_sum_to_one(t_in, t_out):
    weights = cubic_resize_weights(t_in, t_out)
    assert torch.allclose(weights.sum(1), torch.ones(t_out), atol=1e-6)
    x = torch.full((2, t_in, 3, 3, 4), 2.5)
    assert torch.allclose(resize_time(x, t_out), torch.full((2, t_out, 3, 3, 4), 2.5), atol=1e-5)


def test_resize_time_identity_and_known_value():
    x = torch.randn(1, 5, 2, 2, 3)
    assert resize_time(x, 5) is x
    # Doubling a length-2 signal [0, 1]: output 1 sits at 0.25, Keys(a=-0.5) weights at
    # offsets (-0.25, 0.75) are (0.8671875, 0.2265625); output 0 sits at -0.25, weights at
    # (0.25, 1.25) are (0.8671875, -0.0703125); each renormalised by its sum.
    y = resize_time(torch.tensor([0.0, 1.0]).reshape(1, 2, 1, 1, 1), 4).flatten()
    assert y[1].item() == pytest.approx(0.2265625 / 1.09375, abs=1e-6)
    assert y[0].item() == pytest.approx(-0.0703125 / 0.796875, abs=1e-6)
    assert torch.allclose(y + y.flip(0), torch.ones(4), atol=1e-6)   # symmetric about 0.5


def _heads():
    return {
        "attentive": lambda: AttentiveReadout(D, 5, num_frames=3, width=16, num_heads=2),
        "pose": lambda: PoseReadout(D, width=16, num_heads=2),
        "depth": lambda: DepthReadout(D, 6, qkv_size=16, num_heads=2, mlp_size=32,
                                      num_fourier_bases=4, train_stride=1),
        "points": lambda: TrackingReadout(D, "points", **TRACK_SIZES),
        "boxes": lambda: TrackingReadout(D, "boxes", **TRACK_SIZES),
    }


@pytest.mark.parametrize("name", sorted(_heads()))
def test_wrong_width_names_expected_and_received(name):
    head = _heads()[name]()
    x = torch.randn(2, 3, 2, 2, D + 1)
    args = (x, torch.rand(2, 4, 2 if name != "boxes" else 4)) if name in ("points", "boxes") else (x,)
    with pytest.raises(ValueError, match=r"must be \(b, .*received shape"):
        head(*args)


def test_wrong_rank_and_frame_count_are_named():
    head = _heads()["attentive"]()
    with pytest.raises(ValueError, match=r"\(b, 3, h, w, 16\).*4 dims"):
        head(torch.randn(2, 3, 4, D))
    with pytest.raises(ValueError, match="5 frames != 3"):
        head(torch.randn(2, 5, 2, 2, D))
    with pytest.raises(ValueError, match=r"queries must be \(b=2, q, 2\)"):
        _heads()["points"]()(torch.randn(2, 3, 2, 2, D), torch.rand(2, 4, 4))


def test_output_shapes():
    x = torch.randn(2, 3, 2, 2, D)
    heads = _heads()
    assert heads["attentive"]()(x).shape == (2, 5)
    pose = heads["pose"]()(first_last_frames(x))
    assert pose["pose"].shape == (2, 3, 4) and pose["raw"].shape == (2, 12)
    depth = heads["depth"]().eval()(x)
    assert depth["depth"].shape == (2, 3, 6, 6) and depth["rows"].tolist() == list(range(6))
    points = heads["points"]()(x, torch.rand(2, 4, 2))
    assert points["values"].shape == (2, 4, 3, 2) and points["logits"].shape == (2, 4, 3, 2)
    assert heads["boxes"]()(x, torch.rand(2, 4, 4))["values"].shape == (2, 4, 3, 4)


def test_depth_training_subsamples_the_grid():
    head = DepthReadout(D, (8, 12), qkv_size=16, num_heads=2, mlp_size=16, num_fourier_bases=2,
                        train_stride=4)
    out = head(torch.randn(1, 2, 2, 2, D))
    assert out["depth"].shape == (1, 2, 2, 3)
    assert (out["rows"] % 4 == out["rows"][0] % 4).all() and len(out["cols"]) == 3


def test_tracking_reinitialises_at_the_query_frame():
    """A track queried at frame 2 has, at frame 2, the output of a track started there."""
    torch.manual_seed(0)
    head = TrackingReadout(D, "points", **TRACK_SIZES)
    x, queries = torch.randn(1, 4, 2, 2, D), torch.rand(1, 1, 2)
    late = head(x, queries, torch.tensor([[2]]))["values"][:, :, 2:]
    fresh = head(x[:, 2:], queries)["values"]
    assert torch.allclose(late, fresh, atol=1e-6)


def _overfit_case(name):
    """(head, inputs, loss_fn) on one tiny random batch."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 2, 2, D)
    head = _heads()[name]()
    if name == "attentive":
        labels = torch.tensor([1, 3])
        return head, (x,), lambda out: losses.classification_loss(out, labels)
    if name == "pose":
        target = torch.cat([roma.random_rotmat(2), torch.randn(2, 3, 1)], dim=-1)
        return head, (first_last_frames(x),), lambda out: losses.pose_loss(out["pose"], target)
    if name == "depth":
        target = torch.rand(2, 3, 6, 6) + 1.0
        valid = torch.rand(2, 3, 6, 6) > 0.2
        return head, (x,), lambda out: losses.depth_loss(out["depth"], target, valid)
    queries = torch.rand(2, 3, 2 if name == "points" else 4)
    if name == "points":
        target = torch.rand(2, 3, 3, 2)
        occluded = torch.rand(2, 3, 3) > 0.7
        return head, (x, queries), lambda out: losses.point_track_loss(
            out["values"], out["logits"], target, occluded)
    target = torch.rand(2, 3, 3, 4)
    valid = torch.rand(2, 3, 3) > 0.2
    return head, (x, queries), lambda out: losses.box_track_loss(out["values"], target, valid)


@pytest.mark.parametrize("name", sorted(_heads()))
def test_each_head_overfits_one_batch(name):
    head, inputs, loss_fn = _overfit_case(name)
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    first = None
    for _ in range(STEPS):
        loss = loss_fn(head(*inputs))
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss_fn(head(*inputs)).item() < 0.1 * first


def test_pose_head_names_itself_and_the_frame_count():
    head = PoseReadout(D, width=16, num_heads=2)
    with pytest.raises(ValueError, match=r"PoseReadout: activations must be \(b, 1, h, w, 32\).*"
                                         r"2 frames != 1"):
        head(torch.randn(1, 2, 2, 2, 2 * D))
    with pytest.raises(ValueError, match=r"\(b, t, h, w, D\); received \(2, 3, 4\)"):
        first_last_frames(torch.randn(2, 3, 4))
