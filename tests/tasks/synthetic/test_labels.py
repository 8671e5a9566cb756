"""Label sanity: the motion analog cannot be read from one frame but can from frame differences.

Simple models on a few hundred tiny clips (32 x 32): logistic regression on one frame's
pixels, and on normal-flow statistics from frame differences (It * grad I in a 4 x 4 grid
x 4 time bins). About 15 s on 2 idle cores.
"""

import einops
import torch

from tasks.synthetic import analogs
from tasks.synthetic.dataset import clip_generator

SIZE, FRAMES = 32, 9


def _data(name, count, frames=FRAMES):
    items = []
    for start in range(0, count, 32):
        gens = [clip_generator(name, "test", 0, i) for i in range(start, min(count, start + 32))]
        items += analogs.render_items(analogs.get(name), gens, SIZE, frames)
    video = torch.stack([torch.as_tensor(it["video"]) for it in items]).float() / 255
    return video, torch.tensor([int(it["label"]) for it in items])


def _fit_accuracy(x, y, num_classes, train, steps=300):
    """Held-out accuracy of an L2-regularised multinomial logistic regression."""
    torch.manual_seed(0)
    mu, sd = x[:train].mean(0), x[:train].std(0) + 1e-4
    x = (x - mu) / sd
    lin = torch.nn.Linear(x.shape[1], num_classes)
    opt = torch.optim.Adam(lin.parameters(), lr=0.02, weight_decay=1e-3)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(lin(x[:train]), y[:train]).backward()
        opt.step()
    return float((lin(x[train:]).argmax(-1) == y[train:]).float().mean())


def _flow_features(video):
    """Normal-flow statistics: (b, T, H, W, 3) -> (b, features)."""
    g = video.mean(-1)
    g = torch.nn.functional.avg_pool2d(g, 3, 1, 1)
    it = g[:, 1:] - g[:, :-1]
    m = 0.5 * (g[:, 1:] + g[:, :-1])
    ix = torch.gradient(m, dim=3)[0]
    iy = torch.gradient(m, dim=2)[0]
    mag = ix * ix + iy * iy + 1e-3
    u, v = -it * ix / mag, -it * iy / mag
    stats = torch.stack([u, v, it.abs()], dim=2)                  # (b, T-1, 3, H, W)
    pooled = einops.reduce(stats, "b (tb t) f (gh h) (gw w) -> b tb f gh gw", "mean", tb=4, gh=4, gw=4)
    return einops.rearrange(pooled, "b tb f gh gw -> b (tb f gh gw)")


def test_motion_analog_needs_time():
    k = len(analogs.MOTION_CLASSES)
    video, y = _data("motion", 352)
    chance = 1.0 / k
    # One frame per clip (a different frame index per clip), downsampled pixels.
    pick = torch.arange(len(y)) % FRAMES
    frame = video[torch.arange(len(y)), pick]
    one = einops.reduce(frame, "b (h 2) (w 2) c -> b (h w c)", "mean")
    acc_one = _fit_accuracy(one, y, k, train=264)
    acc_diff = _fit_accuracy(_flow_features(video), y, k, train=264)
    assert acc_one < chance + 0.12, (acc_one, acc_diff)
    assert acc_diff > 3 * chance, (acc_one, acc_diff)
