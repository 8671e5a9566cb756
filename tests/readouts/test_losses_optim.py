"""Losses: closed forms, empty masks stay finite; the paper's optimiser schedule."""

import math

import pytest
import torch

from readouts import losses
from readouts.optim import paper_optimizer, warmup_cosine


def test_huber_distance_closed_form():
    err = torch.tensor([[3.0, 0.0], [0.0, 6.0]])
    assert losses.huber_distance(err, 4.0).tolist() == pytest.approx([4.5, 4.0 * (6.0 - 2.0)])


def test_losses_with_empty_masks_are_zero_and_differentiable():
    pred = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = losses.depth_loss(pred, torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(pred.grad).all()
    values = torch.rand(1, 2, 3, 4, requires_grad=True)
    box = losses.box_track_loss(values, torch.rand(1, 2, 3, 4), torch.zeros(1, 2, 3, dtype=torch.bool))
    assert box.item() == 0.0


def test_point_loss_all_occluded_uses_only_visibility():
    values, logits = torch.rand(1, 2, 3, 2), torch.zeros(1, 2, 3, 2)
    occluded = torch.ones(1, 2, 3, dtype=torch.bool)
    loss = losses.point_track_loss(values, logits, torch.rand(1, 2, 3, 2), occluded)
    assert loss.item() == pytest.approx(math.log(2.0))    # BCE(0 logit, target 0) only


def test_point_loss_perfect_positions():
    target = torch.rand(1, 2, 3, 2)
    logits = torch.full((1, 2, 3, 2), 30.0)                 # visible and certain
    occluded = torch.zeros(1, 2, 3, dtype=torch.bool)
    assert losses.point_track_loss(target, logits, target, occluded).item() < 1e-6
    # Frames before the query frame are ignored entirely.
    bad = target.clone()
    bad[:, :, 0] += 0.5
    query = torch.tensor([[1, 1]])
    assert losses.point_track_loss(bad, logits, target, occluded, query).item() < 1e-6


def test_pose_and_box_losses_closed_form():
    gt = torch.zeros(1, 3, 4)
    assert losses.pose_loss(gt + 0.5, gt).item() == pytest.approx(0.25)
    valid = torch.tensor([[[True, False]]])
    pred = torch.tensor([[[[0.1, 0.2, 0.3, 0.4], [9.0, 9.0, 9.0, 9.0]]]])
    assert losses.box_track_loss(pred, torch.zeros(1, 1, 2, 4), valid).item() == pytest.approx(0.075)


def test_schedule_matches_the_paper():
    kw = dict(steps=40_000, warmup=1000, peak=3e-4, final=1e-7)
    assert warmup_cosine(0, **kw) == 0.0
    assert warmup_cosine(500, **kw) == pytest.approx(1.5e-4)
    assert warmup_cosine(1000, **kw) == pytest.approx(3e-4)
    assert warmup_cosine(40_000, **kw) == pytest.approx(1e-7)
    assert warmup_cosine(20_500, **kw) == pytest.approx((3e-4 + 1e-7) / 2)


def test_optimizer_defaults_and_warmup_taken_as_given():
    param = torch.nn.Parameter(torch.zeros(3))
    optimizer, scheduler = paper_optimizer([param], steps=200, warmup=50)
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.AdamW)
    assert group["weight_decay"] == 1e-4 and group["eps"] == 1e-8
    lrs = []
    for _ in range(200):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    # No cap: 50 warm-up steps stay 50 (a 10 % cap would have peaked at step 20).
    assert lrs[0] == 0.0 and lrs[25] == pytest.approx(1.5e-4) and lrs[50] == pytest.approx(3e-4)
    assert lrs[20] == pytest.approx(1.2e-4)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-7)
    with pytest.raises(ValueError, match="steps"):
        paper_optimizer([param], steps=0)


@pytest.mark.parametrize("steps, warmup", [(200, 1000), (1000, 1000), (5, -1)])
def test_optimizer_refuses_a_warmup_the_run_never_finishes(steps, warmup):
    with pytest.raises(ValueError, match="PaperOptimizer.warmup"):
        paper_optimizer([torch.nn.Parameter(torch.zeros(1))], steps=steps, warmup=warmup)
