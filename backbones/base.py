"""The Backbone contract: what every probed model implements, and the shared noise axis.

A backbone turns a clip into captured activations from ONE forward pass:

  video uint8 (b, T, H, W, 3)
    -> the model's own preprocessing (tokenizer / VAE / patch embedding)
    -> noise at level t (diffusion backbones; encoders ignore t)
    -> forward pass that stops after the deepest requested block
    -> {block: (b, t', h', w', D) float32}   CLS / register tokens dropped, patch grid restored

Block 0 is the embedding output; blocks 1..num_blocks are the model's blocks in order.

Noise levels differ between families (DDPM timestep, flow-matching sigma, none at all). Every
backbone with noise reports a `NoiseLevel` for the `t` it was given: its native value, the
log-SNR, and the WALT-equivalent timestep (the WALT schedule's t with the same SNR), so curves of
different families share one x-axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor

from walt.noise import NoiseSchedule

FAMILIES_WITHOUT_NOISE = ("encoder", "pixels", "oracle")


@dataclass(frozen=True)
class NoiseLevel:
    """One noise level on the shared axis.

    native: the model's own value (DDPM timestep index; flow-matching sigma in [0, 1]).
    log_snr: natural log of SNR = signal variance / noise variance of the noised latent
      (DDPM: abar / (1 - abar); flow matching x_s = (1 - s) x0 + s eps: ((1 - s) / s)^2).
      +inf at zero noise, -inf at pure noise.
    walt_t: the WALT schedule's (linear betas, zero terminal SNR) timestep, fractional, whose
      log-SNR equals `log_snr` (0 for the clean end, 999 for pure noise).
    """

    native: float
    log_snr: float
    walt_t: float

    def to_dict(self) -> dict:
        return {"native": self.native, "log_snr": self.log_snr, "walt_t": self.walt_t}


def log_snr_from_abar(abar: float) -> float:
    """DDPM-style: log(abar / (1 - abar)); +inf at abar = 1, -inf at abar = 0."""
    if abar >= 1.0:
        return math.inf
    if abar <= 0.0:
        return -math.inf
    return math.log(abar / (1.0 - abar))


def log_snr_from_sigma(sigma: float) -> float:
    """Flow matching x = (1 - sigma) x0 + sigma eps: log(((1 - sigma) / sigma)^2)."""
    if sigma <= 0.0:
        return math.inf
    if sigma >= 1.0:
        return -math.inf
    return 2.0 * math.log((1.0 - sigma) / sigma)


_WALT_LOG_SNR: Tensor | None = None


def walt_equivalent_t(log_snr: float) -> float:
    """The fractional WALT timestep with the given log-SNR (linear interpolation in log-SNR
    between the integer timesteps of WALT's schedule, which is strictly decreasing in t)."""
    global _WALT_LOG_SNR
    if _WALT_LOG_SNR is None:
        abar = NoiseSchedule().alphas_cumprod
        _WALT_LOG_SNR = torch.log(abar / (1 - abar))   # (1000,) decreasing, last = -inf
    table = _WALT_LOG_SNR
    last = len(table) - 1
    if log_snr >= float(table[0]):
        return 0.0
    if log_snr <= float(table[last - 1]):
        # between the last finite step and pure noise: interpolate towards t = last
        return float(last) if math.isinf(log_snr) else float(last - 1)
    # table decreasing: find i with table[i] >= log_snr > table[i + 1]
    i = int(torch.searchsorted(-table[:last], torch.tensor(-log_snr, dtype=table.dtype))) - 1
    hi, lo = float(table[i]), float(table[i + 1])
    return i + (hi - log_snr) / (hi - lo)


@runtime_checkable
class Backbone(Protocol):
    """A frozen model whose activations readouts probe.

    features(video, t, blocks, seeds=None) -> {block: (b, t', h', w', D) float32}, ONE pass.
      video: uint8 (b, T, H, W, 3); t: noise level, int or (b,) long in the backbone's native
      units (WALT / DDPM: timestep index; flow matching: timestep index of the model's own
      scheduler; backbones without noise ignore it); blocks: indices in [0, num_blocks];
      seeds: (b,) long per-example seeds for any randomness (fixed eval noise), None = fresh.
    noise_level(t) -> NoiseLevel for a scalar t, or None for a backbone without noise.
    feature_dim: D.  num_blocks: L (valid blocks 0..L).
    name: short label for tables ('V-WALT-small').  family: 'walt', 'pixels', 'oracle',
      'cogvideox', 'dinov2', ...  variant: 'image' | 'video'.  size: the size name ('small',
      '284m', '2b', ...); report orders sizes by parameter count.
    fingerprint: stable string identifying weights + config + preprocessing (feature-cache key).

    Optional: feature_spans(num_frames) -> (t', 2) float [start, stop), the frames of a
    num_frames-frame clip each feature frame covers (contiguous, increasing). A backbone whose
    time axis is not uniform says so here (WALT's causal tokenizer: [0, 1), [1, 5), ...);
    without it `frame_spans` assumes t' equal spans. Per-frame heads resample time on it.
    """

    feature_dim: int
    num_blocks: int
    name: str
    family: str
    variant: str
    size: str

    @property
    def fingerprint(self) -> str: ...

    def features(self, video: Tensor, t, blocks: Sequence[int],
                 seeds: Tensor | None = None) -> dict[int, Tensor]: ...

    def noise_level(self, t) -> NoiseLevel | None: ...


def causal_spans(num_frames: int, factor: int) -> Tensor:
    """(t', 2) float64 [start, stop) of a causal tokenizer's latent frames: the first frame alone,
    then groups of `factor` (t' = 1 + (num_frames - 1) / factor). factor 1: one span per frame."""
    if num_frames < 1 or (num_frames - 1) % factor:
        raise ValueError(f"a causal tokenizer with temporal factor {factor} takes 1 + {factor}k "
                         f"frames; got {num_frames}")
    stops = torch.arange(1, num_frames + 1, factor, dtype=torch.float64)    # 1, 1 + f, 1 + 2f, ...
    starts = torch.cat([stops.new_zeros(1), stops[:-1]])
    return torch.stack([starts, stops], dim=-1)


def uniform_spans(num_frames: int, num_feature_frames: int) -> Tensor:
    """(t', 2) float64 [start, stop): t' equal spans tiling [0, num_frames)."""
    edges = torch.linspace(0, num_frames, num_feature_frames + 1, dtype=torch.float64)
    return torch.stack([edges[:-1], edges[1:]], dim=-1)


def frame_spans(backbone, num_frames: int, num_feature_frames: int) -> Tensor:
    """(t', 2) float64: the backbone's own `feature_spans(num_frames)` when it has one, else
    `uniform_spans`. Raises ValueError when the backbone's spans disagree with its features."""
    own = getattr(backbone, "feature_spans", None)
    spans = own(num_frames) if callable(own) else uniform_spans(num_frames, num_feature_frames)
    spans = torch.as_tensor(spans, dtype=torch.float64)
    if spans.shape != (num_feature_frames, 2):
        raise ValueError(f"{type(backbone).__name__}.feature_spans({num_frames}) gave spans of shape "
                         f"{tuple(spans.shape)} for {num_feature_frames} feature frames")
    return spans


def resolve_blocks(spec, num_blocks: int) -> list[int]:
    """Block selection -> sorted unique indices in [0, num_blocks].

    spec: an int (a block index), a float in [0, 1] (a fraction of depth: round(f * L), so 0.66
    of 24 -> 16 and 1.0 -> L), a string of either ('16', '0.66'), or an iterable of those.
    """
    items = [spec] if isinstance(spec, (int, float, str)) else list(spec)
    out = set()
    for item in items:
        if isinstance(item, str):
            item = float(item) if "." in item else int(item)
        if isinstance(item, bool):
            raise ValueError(f"block spec {item!r} is a bool; give an int or a fraction")
        if isinstance(item, float):
            if not 0.0 <= item <= 1.0:
                raise ValueError(f"fractional block {item} is outside [0, 1] (ints are block indices)")
            item = round(item * num_blocks)
        item = int(item)
        if not 0 <= item <= num_blocks:
            raise ValueError(f"block {item} does not exist: this backbone has blocks 0..{num_blocks}")
        out.add(item)
    if not out:
        raise ValueError("no blocks requested")
    return sorted(out)
