"""The matching tracking readout (readouts/matching.py): closed forms first, then the head."""

import pytest
import torch
from einops import rearrange, repeat

from readouts.matching import (MatchingTrackReadout, box_points, fit_boxes, match,
                               pixel_centres, sample_descriptors, soft_argmax)
from readouts.resample import time_weights


def _one_hot_scene(num_frames=4, size=8, num_points=3, seed=0):
    """Keys that name their surface point: channel n is 1 exactly where point n is.

    Returns keys (1, T, H, W, n) and each point's pixel (1, n, T, 2) long [col, row]."""
    gen = torch.Generator().manual_seed(seed)
    cells = torch.stack([torch.randperm(size * size, generator=gen)[:num_points]
                         for _ in range(num_frames)])                     # (T, n), distinct
    keys = torch.zeros(num_frames, size * size, num_points)
    keys[torch.arange(num_frames)[:, None], cells, torch.arange(num_points)] = 1.0
    keys = rearrange(keys, "T (H W) n -> 1 T H W n", H=size)
    pixels = rearrange(torch.stack([cells % size, cells // size], dim=-1), "T n xy -> 1 n T xy")
    return keys, pixels


def test_one_hot_keys_give_exact_tracks():
    """Keys = one-hot surface points: the descriptor read at the query finds the point in every
    frame, and the soft-argmax returns its pixel centre."""
    size = 8
    keys, pixels = _one_hot_scene(size=size)
    centres = (pixels + 0.5) / size                                        # (1, n, T, 2)
    for query_frame in (0, 2):
        frames = torch.full((1, 3), query_frame)
        descriptors = sample_descriptors(keys, centres[:, :, query_frame], frames)
        for window in (0, 1):
            out = match(keys, descriptors, scale=100.0, window=window)
            torch.testing.assert_close(out["xy"], centres, atol=1e-5, rtol=0)
            torch.testing.assert_close(out["peak"], torch.ones(1, 3, 4))


def test_bilinear_descriptor_reads_between_pixels():
    """Keys holding their own centre (x, y): a descriptor read anywhere inside the outer
    centres equals the point (bilinear), so queries off the pixel grid are read exactly."""
    keys = repeat(pixel_centres(6, 5, like=torch.zeros(())), "H W xy -> 1 T H W xy", T=2)
    points = torch.tensor([[[0.33, 0.41], [0.5, 0.5], [0.12, 0.88]]])
    out = sample_descriptors(keys, points, torch.tensor([[0, 1, 1]]))
    torch.testing.assert_close(out, points)
    with pytest.raises(ValueError, match="query frames must lie in"):
        sample_descriptors(keys, points, torch.tensor([[0, 1, 2]]))


def test_soft_argmax_window_ignores_a_far_mode():
    logits = torch.full((1, 9, 9), -50.0)
    logits[0, 1, 1], logits[0, 1, 2] = 10.0, 10.0           # the match, split over two pixels
    logits[0, 7, 7] = 9.0                                    # a far second mode
    near, weights = soft_argmax(logits, window=1)
    torch.testing.assert_close(near, torch.tensor([[2.0 / 9, 1.5 / 9]]))
    assert weights[0, 7, 7] == 0
    whole, _ = soft_argmax(logits, window=0)
    assert whole[0, 0] > near[0, 0] + 0.05                  # the far mode pulls the global mean


def test_fit_boxes_follows_a_moving_scaling_grid():
    boxes = torch.tensor([[[0.2, 0.3, 0.4, 0.7]]])                        # (b, n, 4)
    start = box_points(boxes, 3)                                          # (1, 1, 9, 2)
    assert torch.allclose(start[0, 0, 4], torch.tensor([0.3, 0.5]))      # the centre cell
    shift, scale = torch.tensor([0.1, -0.05]), torch.tensor([1.5, 0.5])
    centre = torch.tensor([0.3, 0.5])
    moved = (start - centre) * scale + centre + shift                     # an affine move
    tracked = torch.stack([start, moved], dim=2)                          # (1, 1, T=2, 9, 2)
    out = fit_boxes(boxes, start, tracked, torch.ones(1, 1, 2, 9))
    torch.testing.assert_close(out[0, 0, 0], boxes[0, 0])
    expected = torch.cat([centre + shift - scale * torch.tensor([0.1, 0.2]),
                          centre + shift + scale * torch.tensor([0.1, 0.2])])
    torch.testing.assert_close(out[0, 0, 1], expected)
    # A point with zero weight (e.g. background in a box corner) does not move the box.
    tracked[0, 0, 1, 0] += 0.3
    weights = torch.ones(1, 1, 2, 9)
    weights[..., 0] = 0
    torch.testing.assert_close(fit_boxes(boxes, start, tracked, weights)[0, 0, 1], expected)
    # Shift only: the box keeps its size and moves with the points' mean.
    shifted = fit_boxes(boxes, start, tracked, torch.ones(1, 1, 2, 9), scale=False)[0, 0, 1]
    mean_shift = (tracked[0, 0, 1] - start[0, 0]).mean(dim=0)
    torch.testing.assert_close(shifted, boxes[0, 0] + mean_shift.repeat(2))


HEAD = dict(key_dim=8, hidden=16, patch=2)


@pytest.mark.parametrize("kind,coords", [("points", 2), ("boxes", 4)])
@pytest.mark.parametrize("resample", ["tracks", "features"])
def test_head_shapes_and_gradients(kind, coords, resample):
    torch.manual_seed(0)
    head = MatchingTrackReadout(24, kind, resample=resample, **HEAD)
    b, t, frames, q = 2, 3, 9, 4
    x = torch.randn(b, t if resample == "tracks" else frames, 4, 4, 24)
    queries = torch.rand(b, q, coords)
    if kind == "boxes":
        queries = torch.cat([queries[..., :2] * 0.5, queries[..., :2] * 0.5 + 0.3], dim=-1)
    weights = time_weights(t, frames) if resample == "tracks" else None
    out = head(x, queries, None, weights)
    assert out["values"].shape == (b, q, frames, coords)
    assert out["logits"].shape == (b, q, frames, 2)
    assert bool(((out["values"] >= 0) & (out["values"] <= 1)).all())
    (out["values"].sum() + out["logits"].sum()).backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name


def test_head_explains_wrong_inputs():
    head = MatchingTrackReadout(24, "points", **HEAD)
    x = torch.randn(1, 3, 4, 4, 24)
    with pytest.raises(ValueError, match="needs the time weights"):
        head(x, torch.rand(1, 2, 2))
    with pytest.raises(ValueError, match=r"expected \(T, 3\)"):
        head(x, torch.rand(1, 2, 2), None, time_weights(5, 9))
    with pytest.raises(ValueError, match=r"queries must be \(b=1, q, 2\)"):
        head(x, torch.rand(1, 2, 4), None, time_weights(3, 9))
    with pytest.raises(ValueError, match="resample must be one of"):
        MatchingTrackReadout(24, resample="latents")


def test_resampled_tracks_follow_the_feature_frames():
    """With identity time weights the 'tracks' path equals the 'features' path; with t' < T the
    tracks at the clip frames are the time weights applied to the per-feature-frame tracks
    (3 -> 9 frames: clip frame 1 sits exactly on feature frame 0, so queries there read the
    same descriptor)."""
    torch.manual_seed(0)
    head = MatchingTrackReadout(24, "points", **HEAD).eval()
    x, queries = torch.randn(1, 3, 4, 4, 24), torch.rand(1, 5, 2)
    at_features = head(x, queries, None, torch.eye(3))
    head.resample = "features"
    torch.testing.assert_close(head(x, queries), at_features)
    head.resample = "tracks"
    weights = time_weights(3, 9)
    assert torch.equal(weights[1], torch.tensor([1.0, 0.0, 0.0]))
    resampled = head(x, queries, torch.ones(1, 5, dtype=torch.long), weights)["values"]
    expected = torch.einsum("Tt,bqtc->bqTc", weights, at_features["values"]).clamp(0, 1)
    torch.testing.assert_close(resampled, expected)


def test_head_overfits_one_batch():
    """A few hundred steps on one clip of random features make the tracks move as labelled."""
    torch.manual_seed(0)
    head = MatchingTrackReadout(24, "points", **HEAD)
    x, queries = torch.randn(1, 3, 4, 4, 24), torch.rand(1, 6, 2) * 0.8 + 0.1
    target = (queries[:, :, None] + torch.linspace(0, 0.1, 3)[:, None]).clamp(0, 1)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    weights = torch.eye(3)
    first = None
    for _ in range(300):
        loss = (head(x, queries, None, weights)["values"] - target).abs().mean()
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first, (first, loss.item())


def test_locality_prior_alone_keeps_points_at_their_query():
    """Keys that say nothing (all equal): the match is the Gaussian prior around the query, so
    the soft-argmax returns the query (a prior ~2 px wide, far from the borders)."""
    head = MatchingTrackReadout(24, "points", **{**HEAD, "locality": 0.06}).eval()
    keys = torch.ones(1, 2, 32, 32, 8) / 8 ** 0.5
    queries = torch.tensor([[[0.42, 0.58], [0.53, 0.47]]])
    out = head.track(keys, queries, torch.zeros(1, 2, dtype=torch.long))
    torch.testing.assert_close(out["xy"], repeat(queries, "b q xy -> b q T xy", T=2),
                               atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", ["points", "boxes"])
def test_task_kinds_select_and_train_the_matcher(kind):
    """head_kwargs {'readout': 'matching'} builds this head; the task hands it the features at
    their own frames plus the time weights, and its point loss includes the match term."""
    from tasks import kinds
    from tasks.task import Task  # noqa: F401  (the Task contract the kinds return)
    torch.manual_seed(0)
    b, frames, size = 2, 9, 8
    head_kwargs = {"readout": "matching", **HEAD}
    if kind == "points":
        query_xy = torch.rand(b, 4, 2) * size
        target = (query_xy[:, :, None] + torch.linspace(0, 1, frames)[:, None]).clamp(0, size - 0.01)
        batch = {"query_points": torch.cat([torch.zeros(b, 4, 1), query_xy.flip(-1)], dim=-1),
                 "target_points": target, "occluded": torch.zeros(b, 4, frames, dtype=torch.bool)}
        task = kinds.point_tracks("p", {"train": []}, image_size=size, num_frames=frames,
                                  head_kwargs=head_kwargs)
    else:
        corner = torch.rand(b, 3, 1, 2) * 0.5
        boxes = torch.cat([corner, corner + 0.3], dim=-1).expand(b, 3, frames, 4).clone()
        batch = {"boxes": boxes, "box_valid": torch.ones(b, 3, frames, dtype=torch.bool)}
        task = kinds.box_tracks("b", {"train": []}, num_frames=frames, head_kwargs=head_kwargs)
    head = task.make_head(24)
    assert isinstance(head, MatchingTrackReadout)
    features = torch.randn(b, 3, 4, 4, 24)                       # t' = 3 feature frames
    inputs = task.head_inputs(features, batch)
    assert inputs[0].shape[1] == 3 and inputs[-1].shape == (frames, 3)
    preds = head(*inputs)
    assert preds["values"].shape[2] == frames
    if kind == "points":
        assert preds["match_logits"].shape == (b, 4, 3, 8, 8)
    loss = task.loss(preds, batch)
    loss.backward()
    assert torch.isfinite(loss) and head.unpatchify.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="head_kwargs\\['readout'\\] must be one of"):
        kinds.point_tracks("p", {"train": []}, image_size=size,
                           head_kwargs={"readout": "recurrent"}).make_head(24)


@pytest.mark.parametrize("kind,coords", [("points", 2), ("boxes", 4)])
def test_query_chunks_change_memory_not_values(kind, coords):
    """Matching 3 queries at a time, keys and matches recomputed in the backward pass, gives the
    values, the matching scores and every parameter gradient of matching all at once, kept."""
    from readouts.losses import match_loss
    torch.manual_seed(0)
    x, queries = torch.randn(2, 3, 4, 4, 24), torch.rand(2, 5, coords) * 0.4
    if kind == "boxes":
        queries[..., 2:] += 0.5
    weights = time_weights(3, 9)
    grads, outs = [], []
    for chunk, recompute in ((0, False), (3, True)):
        torch.manual_seed(1)
        head = MatchingTrackReadout(24, kind, **HEAD, query_chunk=chunk, recompute=recompute)
        out = head(x, queries, None, weights)
        loss = out["values"].sum() + out["logits"].square().sum()
        if kind == "points":
            target = torch.rand(2, 5, 3, 2)
            loss = loss + match_loss(out["match_logits"], target, torch.ones(2, 5, 3, dtype=torch.bool))
        loss.backward()
        outs.append(out)
        grads.append({n: p.grad for n, p in head.named_parameters()})
    for name in outs[0]:
        torch.testing.assert_close(outs[1][name], outs[0][name], atol=1e-6, rtol=1e-5)
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-4)
    with pytest.raises(ValueError, match="query_chunk must be >= 0"):
        MatchingTrackReadout(24, kind, query_chunk=-1)


def test_eval_drops_the_matching_scores():
    head = MatchingTrackReadout(24, "points", **HEAD).eval()
    with torch.no_grad():
        out = head(torch.randn(1, 3, 4, 4, 24), torch.rand(1, 2, 2), None, time_weights(3, 9))
    assert "match_logits" not in out and out["values"].shape == (1, 2, 9, 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_head_trains_on_cuda_under_cuda_graphs():
    """The base study compiles tracking heads with mode 'reduce-overhead' (CUDA graphs): the
    matcher at the study's shapes (d = 512, 5 x 8 x 8 tokens, 17 clip frames, bf16 autocast)
    trains there, and its compiled forward equals the eager one."""
    from probing.probe import compiled
    torch.manual_seed(0)
    dev = torch.device("cuda")
    head = MatchingTrackReadout(512, "points", key_dim=32, hidden=64, window=0, locality=0.2).to(dev)
    run = compiled(head, "reduce-overhead")
    x, queries = torch.randn(8, 5, 8, 8, 512, device=dev), torch.rand(8, 16, 2, device=dev)
    weights = time_weights(5, 17).to(dev)
    target = queries[:, :, None].expand(-1, -1, 17, -1)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = (run(x, queries, None, weights)["values"].float() - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))), losses
    with torch.no_grad():
        torch.testing.assert_close(run(x, queries, None, weights)["values"],
                                   head(x, queries, None, weights)["values"], atol=1e-4, rtol=1e-4)
