"""Colour maps shared by the views (runners/visualize*.py): feature PCA and optical flow."""

from __future__ import annotations


def pca_rgb(feats):
    """(t, h, w, d) features -> (t, h, w, 3) in [0, 1]: projection on the top-3 principal
    components of these tokens, each component min-max scaled (as DINO-style PCA maps).

    Exact PCA (an SVD of the centred tokens, a few hundred of them), each component's sign fixed
    so its largest loading is positive: the same features always give the same picture
    (torch.pca_lowrank is randomised and its third component changes from call to call)."""
    import torch
    from einops import rearrange

    t, h, w, _ = feats.shape
    x = rearrange(feats, "t h w d -> (t h w) d").float()
    x = x - x.mean(dim=0)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    v = vh[:3].T                                                    # (d, 3)
    v = v * torch.sign(v.gather(0, v.abs().argmax(dim=0, keepdim=True)))
    y = x @ v
    y = (y - y.min(dim=0).values) / (y.max(dim=0).values - y.min(dim=0).values).clamp_min(1e-8)
    return rearrange(y, "(t h w) c -> t h w c", t=t, h=h, w=w)


def flow_rgb(flow):
    """(H, W, 2) flow [dx, dy] -> (H, W, 3) in [0, 1]: hue = direction, brightness = magnitude
    relative to the largest in the map (the usual flow colour wheel)."""
    import numpy as np
    from matplotlib.colors import hsv_to_rgb

    f = np.asarray(flow, dtype=np.float64)
    mag = np.hypot(f[..., 0], f[..., 1])
    hue = (np.arctan2(f[..., 1], f[..., 0]) / (2 * np.pi)) % 1.0
    value = mag / max(mag.max(), 1e-6)
    return hsv_to_rgb(np.stack([hue, np.ones_like(hue), value], axis=-1))
