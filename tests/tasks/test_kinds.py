"""Task kinds end to end on random features and tiny random items: feature handling, head,
loss, a few training steps, and the dataset metric (perfect predictions score perfectly)."""

import pickle

import pytest
import roma
import torch

from tasks import kinds
from tasks.task import Task

D, B, T, S = 16, 2, 5, 16          # feature width, batch, clip frames, image size
ATTENTIVE = dict(width=16, num_heads=2)
TRACKING = dict(latent_size=32, qkv_size=32, num_heads=2, mlp_size=64, num_layers=1,
                num_fourier_bases=4)
DEPTH = dict(qkv_size=16, num_heads=2, mlp_size=32, num_fourier_bases=4, train_stride=4)


@pytest.fixture(autouse=True)
def single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)     # tiny heads: extra threads only contend on a shared machine
    yield
    torch.set_num_threads(previous)


def _points_batch(q=4):
    query_xy = torch.rand(B, q, 2) * S
    target = torch.rand(B, q, T, 2) * S
    target[:, :, 0] = query_xy
    occluded = torch.rand(B, q, T) > 0.7
    occluded[:, :, :2] = False
    query = torch.cat([torch.zeros(B, q, 1), query_xy.flip(-1)], dim=-1)      # [t, y, x]
    return {"query_points": query, "target_points": target, "occluded": occluded}


def _boxes_batch(n=3):
    corner = torch.rand(B, n, T, 2) * 0.5
    boxes = torch.cat([corner, corner + 0.1 + torch.rand(B, n, T, 2) * 0.4], dim=-1)
    valid = torch.rand(B, n, T) > 0.2
    valid[:, :, 0] = True
    return {"boxes": boxes, "box_valid": valid}


def _case(kind):
    """(task, batch, perfect predictions for the metric, perfect metric value)."""
    torch.manual_seed(0)
    video = torch.randint(0, 256, (B, T, S, S, 3), dtype=torch.uint8)
    if kind in ("classification", "image_classification"):
        image = kind == "image_classification"
        batch = {"video": video[:, :1] if image else video, "label": torch.tensor([1, 4])}
        task = kinds.classification(kind, {"train": []}, 6, image_task=image, num_frames=7,
                                    head_kwargs=ATTENTIVE)
        return task, batch, torch.eye(6)[batch["label"]] * 10, 1.0
    if kind == "depth":
        depth = torch.rand(B, T, S, S) + 0.5
        depth[0, 0, :4] = 0.0                     # invalid pixels
        task = kinds.depth(kind, {"train": []}, image_size=S, num_frames=T, head_kwargs=DEPTH)
        perfect = {"depth": depth, "rows": torch.arange(S), "cols": torch.arange(S)}
        return task, {"video": video, "depth": depth}, perfect, 0.0
    if kind == "camera_pose":
        pose = torch.cat([roma.random_rotmat(B), torch.randn(B, 3, 1)], dim=-1)
        task = kinds.camera_pose(kind, {"train": []}, head_kwargs=ATTENTIVE)
        return task, {"video": video, "pose": pose}, {"pose": pose}, 0.0
    if kind == "point_tracks":
        batch = _points_batch()
        task = kinds.point_tracks(kind, {"train": []}, image_size=S, num_frames=T,
                                  head_kwargs=TRACKING)
        logits = torch.where(batch["occluded"][..., None], -20.0, 20.0).expand(-1, -1, -1, 2)
        return task, batch, {"values": batch["target_points"] / S, "logits": logits}, 1.0
    batch = _boxes_batch()
    task = kinds.box_tracks(kind, {"train": []}, num_frames=T, head_kwargs=TRACKING)
    return task, batch, {"values": batch["boxes"], "logits": torch.zeros(B, 3, T, 2)}, 1.0


KINDS = ["classification", "image_classification", "depth", "camera_pose", "point_tracks",
         "box_tracks"]
HEADLINE = {"classification": ("top1", True), "image_classification": ("top1", True),
            "depth": ("abs_rel", False), "camera_pose": ("pose_error", False),
            "point_tracks": ("average_jaccard", True), "box_tracks": ("mean_iou", True)}


@pytest.mark.parametrize("kind", KINDS)
def test_kind_end_to_end(kind):
    task, batch, perfect, best = _case(kind)
    assert isinstance(task, Task) and (task.metric, task.higher_is_better) == HEADLINE[kind]
    pickle.loads(pickle.dumps(task))                              # ships to worker processes
    latent_frames = 1 if kind == "image_classification" else 3
    features = torch.randn(B, latent_frames, 2, 2, D)
    head = task.make_head(D)
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = task.loss(head(*task.head_inputs(features, batch)), batch)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    head.eval()
    with torch.no_grad():
        preds = head(*task.head_inputs(features, batch))
    accumulator = task.new_accumulator()
    accumulator.update(preds, batch)
    value = accumulator.result()[task.metric]
    assert value == value                                         # not NaN
    perfect_acc = task.new_accumulator()
    perfect_acc.update(perfect, batch)
    assert perfect_acc.result()[task.metric] == pytest.approx(best, abs=1e-5)


def test_image_classification_pools_time_unless_told_not_to():
    features = torch.randn(B, 3, 2, 2, D)
    pooled = kinds.classification("c", {}, 4, image_task=True, num_frames=7)
    (x,) = pooled.head_inputs(features, {})
    assert x.shape == (B, 7, 2, 2, D)
    assert torch.allclose(x, features.mean(1, keepdim=True).expand_as(x), atol=1e-5)
    unpooled = kinds.classification("c", {}, 4, image_task=True, num_frames=7, time_pool="none")
    (y,) = unpooled.head_inputs(features, {})
    assert y.shape == (B, 7, 2, 2, D) and not torch.allclose(y[:, 0], y[:, -1])
    with pytest.raises(ValueError, match="time_pool"):
        kinds.classification("c", {}, 4, image_task=True, time_pool="max")


def test_feature_handling_of_the_other_kinds():
    features = torch.randn(B, 3, 2, 2, D)
    (pose_in,) = kinds.camera_pose("p", {}).head_inputs(features, {})
    assert torch.equal(pose_in, torch.cat([features[:, :1], features[:, -1:]], dim=-1))
    (depth_in,) = kinds.depth("d", {}, image_size=S, num_frames=17).head_inputs(
        features, {"depth": torch.zeros(B, 9, S, S)})
    assert depth_in.shape == (B, 9, 2, 2, D)
    batch = _points_batch()
    x, xy, frames = kinds.point_tracks("t", {}, image_size=(S, 2 * S)).head_inputs(features, batch)
    assert x.shape == (B, T, 2, 2, D) and frames.tolist() == [[0] * 4] * B
    expected = torch.stack([batch["query_points"][..., 2] / (2 * S),
                            batch["query_points"][..., 1] / S], dim=-1)
    assert torch.allclose(xy, expected)
    boxes = _boxes_batch()
    x, queries = kinds.box_tracks("b", {}).head_inputs(features, boxes)
    assert x.shape == (B, T, 2, 2, D) and torch.equal(queries, boxes["boxes"][:, :, 0])


def test_head_kwargs_scale_the_readout_and_reject_unknown_names():
    small = kinds.classification("c", {}, 4, image_task=False, head_kwargs=dict(width=32,
                                                                                num_heads=2))
    assert sum(p.numel() for p in small.make_head(D).parameters()) < 50_000
    bad = kinds.point_tracks("t", {}, image_size=S, head_kwargs=dict(widht=3))
    with pytest.raises(TypeError, match="widht"):
        bad.make_head(D)


def test_depth_cap_and_query_mode_options():
    depth = torch.tensor([[[[0.0, 2.0, 20.0]]]])
    preds = {"depth": torch.tensor([[[[5.0, 3.0, 5.0]]]]), "rows": torch.arange(1),
             "cols": torch.arange(3)}
    for cap, expected in [(None, (0.5 + 0.75) / 2), (10.0, 0.5)]:
        accumulator = kinds.depth("d", {}, image_size=(1, 3), max_depth=cap).new_accumulator()
        accumulator.update(preds, {"depth": depth})
        assert accumulator.result()["abs_rel"] == pytest.approx(expected)
    task = kinds.point_tracks("t", {}, image_size=S, query_mode="strided")
    assert task.new_accumulator().inner.query_mode == "strided"
