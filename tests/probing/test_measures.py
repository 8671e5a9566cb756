"""The measures behind the views (probing/measures.py, probing/views.py) and the true optical
flow they are scored against (tasks/synthetic/flow.py): closed forms and the measure's own test."""

import pytest
import torch
from einops import rearrange

from probing import measures, views
from tasks.synthetic.flow import motion_clip


def test_auroc_closed_forms():
    assert measures.auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert measures.auroc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert measures.auroc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5  # ties count 1/2
    # One inversion out of 2 x 2 pairs: 3/4.
    assert measures.auroc([0.1, 0.6, 0.5, 0.9], [0, 0, 1, 1]) == 0.75
    x = torch.randn(200, 8)
    pos = torch.arange(200) < 100
    x[pos, 3] += 10  # the dominant direction separates the sets
    assert measures.pc1_auroc(x, pos, ~pos) == 1.0
    assert measures.pc1_auroc(torch.randn(400, 8), pos.repeat(2), ~pos.repeat(2)) < 0.6


def test_ridge_r2_and_explained_variance_closed_forms():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(500, 6, generator=gen)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 0, 0, 3.0]) + 4.0
    assert measures.ridge_r2(x[:300], y[:300], x[300:], y[300:], lam=1e-8) == pytest.approx(1, abs=1e-6)
    noise = torch.randn(500, generator=gen)
    assert abs(measures.ridge_r2(x[:300], noise[:300], x[300:], noise[300:])) < 0.05
    assert measures.explained_by(x, 3 * x + 1) == pytest.approx(1, abs=1e-6)
    # Unrelated features: the adjustment removes the ~p / n an in-sample fit explains of noise.
    wide = torch.randn(300, 100, generator=gen)
    assert abs(measures.explained_by(wide, torch.randn(300, 6, generator=gen))) < 0.1
    with pytest.raises(ValueError, match="more clips"):
        measures.explained_by(wide[:50], wide[:50])
    assert measures.mean_cosine(x, 2 * x) == pytest.approx(1)
    assert measures.mean_cosine(x, -x) == pytest.approx(-1)


def test_pool_to_grid_follows_the_causal_frame_layout():
    maps = torch.arange(9, dtype=torch.float32)[None, :, None, None].expand(1, 9, 4, 4)
    pooled = measures.pool_to_grid(maps, t=3, h=2, w=2)                  # frames [0], [1-4], [5-8]
    assert pooled[0, :, 0, 0].tolist() == [0.0, 2.5, 6.5]
    assert measures.mask_to_grid(torch.ones(4, 4, dtype=torch.bool), 2, 2).all()


def test_flow_of_the_moving_object_matches_its_point_tracks():
    clip = motion_clip(3, image_size=32, num_frames=5)
    flow, ids = clip["flow"], clip["ids"]
    assert flow.shape == (5, 32, 32, 2)
    # Only object 0 (id 1) moves: the static room and objects have zero flow (last frame aside).
    assert flow[:-1][ids[:-1] != 1].abs().max() < 1e-3
    assert flow[:-1][ids[:-1] == 1].norm(dim=-1).mean() > 0.1
    assert motion_clip(3, image_size=32, num_frames=5, moving=False)["magnitude"].max() < 1e-3


class FlowBackbone:
    """A backbone whose features ARE the true flow: [dx, dy, |flow|] pooled onto a 4 x 4 grid of
    the clip it is given, plus fixed random channels (looked up by the clip's bytes)."""

    def __init__(self, clips):
        self.table = {c["video"].numpy().tobytes(): c for c in clips}

    def features(self, video, t, blocks, seeds=None):
        rows = []
        for v in video:
            c = self.table[v.numpy().tobytes()]
            maps = torch.cat([rearrange(c["flow"], "T H W c -> c T H W"), c["magnitude"][None]])
            grid = measures.pool_to_grid(maps, 2, 4, 4).float()          # (3, t, h, w)
            extra = torch.randn(5, 2, 4, 4, generator=torch.Generator().manual_seed(7))
            rows.append(rearrange(torch.cat([grid, extra]), "d t h w -> t h w d"))
        return {b: torch.stack(rows) for b in blocks}


def _stack(clips):
    return {"video": torch.stack([c["video"] for c in clips]),
            "magnitude": torch.stack([c["magnitude"] for c in clips])}


def test_motion_r2_is_one_for_flow_features_and_zero_for_a_static_clip():
    moving = [motion_clip(s, image_size=32, num_frames=5) for s in range(6)]
    static = [motion_clip(s, image_size=32, num_frames=5, moving=False) for s in range(6)]
    backbone = FlowBackbone(moving + static)
    train, test = _stack(moving[:4]), _stack(moving[4:])
    (row,) = views.motion_r2(backbone, train, test, blocks=[1], timesteps=[0])
    assert row["r2"] > 0.99
    # The same backbone given the static clips: its features carry no motion; targets are still
    # the true flow of the moving clips.
    frozen = {"video": _stack(static)["video"], "magnitude": _stack(moving)["magnitude"]}
    (row,) = views.motion_r2(backbone, {k: v[:4] for k, v in frozen.items()},
                             {k: v[4:] for k, v in frozen.items()}, blocks=[1], timesteps=[0])
    assert row["r2"] < 0.05
