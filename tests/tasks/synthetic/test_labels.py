"""Label sanity: the motion analog cannot be read from one frame but can from frame
differences; the appearance analogs can be read from one frame.

Simple models on a few hundred tiny clips: logistic regression on one frame's pixels, on
normal-flow statistics from frame differences (It * grad I in a 4 x 4 grid x 4 time bins),
and on hand texture features of one 64 x 64 frame (gradient-orientation histograms, edge
densities, orientation coherence, FFT band energies, colour moments; over the frame, two
centre crops and a 2 x 2 grid). About 25 s with one torch thread on a shared 2-core machine.
"""

import math

import einops
import pytest
import torch

from tasks.synthetic import analogs
from tasks.synthetic.dataset import clip_generator

SIZE, FRAMES = 32, 9



def _data(name, count, frames=FRAMES, size=SIZE):
    items = []
    for start in range(0, count, 32):
        gens = [clip_generator(name, "test", 0, i) for i in range(start, min(count, start + 32))]
        items += analogs.render_items(analogs.get(name), gens, size, frames)
    video = torch.stack([torch.as_tensor(it["video"]) for it in items]).float() / 255
    return video, torch.tensor([int(it["label"]) for it in items])


def _fit_accuracy(x, y, num_classes, train, steps=300, weight_decay=1e-3):
    """Held-out accuracy of an L2-regularised multinomial logistic regression."""
    torch.manual_seed(0)
    mu, sd = x[:train].mean(0), x[:train].std(0) + 1e-4
    x = (x - mu) / sd
    lin = torch.nn.Linear(x.shape[1], num_classes)
    opt = torch.optim.Adam(lin.parameters(), lr=0.02, weight_decay=weight_decay)
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


def _texture_stats(x):
    """Colour-blind texture statistics of images x (b, h, w, 3) in [0, 1] -> (b, 30)."""
    g = x.mean(-1)
    gx = torch.nn.functional.pad((g[:, :, 2:] - g[:, :, :-2]) / 2, (1, 1))
    gy = torch.nn.functional.pad((g[:, 2:] - g[:, :-2]) / 2, (0, 0, 1, 1))
    mag = torch.sqrt(gx * gx + gy * gy)
    bins = (torch.atan2(gy, gx) % math.pi / math.pi * 8).long().clamp(max=7)
    hog = torch.zeros(len(x), 8).scatter_add_(1, einops.rearrange(bins, "b h w -> b (h w)"),
                                              einops.rearrange(mag, "b h w -> b (h w)"))
    hog = hog / hog.sum(1, keepdim=True).clamp_min(1e-6)
    edges = torch.stack([(mag > th).float().mean((1, 2)) for th in (0.02, 0.05, 0.1, 0.2)], 1)
    jxx, jyy, jxy = (gx * gx).mean((1, 2)), (gy * gy).mean((1, 2)), (gx * gy).mean((1, 2))
    coherence = torch.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2) / (jxx + jyy + 1e-6)
    power = torch.fft.fft2(g - g.mean((1, 2), keepdim=True)).abs() ** 2
    f = torch.fft.fftfreq(g.shape[1])
    band = (torch.sqrt(f[:, None] ** 2 + f[None] ** 2) / 0.71 * 8).long().clamp(max=7)
    energy = torch.zeros(len(x), 8).scatter_add_(
        1, einops.repeat(band, "h w -> b (h w)", b=len(x)), einops.rearrange(power, "b h w -> b (h w)"))
    energy = energy / energy.sum(1, keepdim=True).clamp_min(1e-9)
    return torch.cat([hog, hog.sort(1, descending=True).values, edges, coherence[:, None], energy,
                      x.mean((1, 2)), x.std((1, 2))], 1)


def _frame_features(img):
    """(b, H, W, 3) -> texture statistics of the frame, two centre crops and a 2 x 2 grid
    over the centre (the labelled object sits near the optical axis)."""
    size = img.shape[1]
    parts = [img] + [img[:, c:size - c, c:size - c] for c in (size // 4, size * 7 // 20)]
    q = size // 4
    parts += [img[:, q * (1 + i): q * (2 + i), q * (1 + j): q * (2 + j)] for i in range(2) for j in range(2)]
    return torch.cat([_texture_stats(p) for p in parts], 1)


@pytest.mark.parametrize("name, frames", [("objects", 1), ("appearance", 3)])
def test_appearance_analogs_are_solvable_from_one_frame(name, frames):
    """Shape x texture family (24 classes) from the middle frame, well above chance.

    The appearance clips are rendered with 3 frames: paths are parametrised over [0, 1],
    so the middle frame is the middle frame of the 17-frame clip, at a sixth of the cost.
    """
    video, y = _data(name, 960, frames=frames, size=64)
    look = y % 24
    x = _frame_features(video[:, frames // 2])
    train = 720
    acc = {"joint": _fit_accuracy(x, look, 24, train, weight_decay=1e-2),
           "shape": _fit_accuracy(x, look // 6, 4, train, weight_decay=1e-2),
           "family": _fit_accuracy(x, look % 6, 6, train, weight_decay=1e-2)}
    assert acc["joint"] >= 3 / 24, acc
    assert acc["shape"] >= 1.6 / 4 and acc["family"] >= 2 / 6, acc
