"""Training objectives of the two pretraining stages, the learning-rate shape, and EMA weights.

Stage 1, tokenizer: reconstruction (L1 + MSE in pixel space) plus a small latent-norm penalty
that keeps the raw latents near unit scale, so the per-channel normalisation computed after
training is well conditioned. Perceptual and adversarial terms are optional callables, off by
default: their usual networks need weights this project cannot download.

Stage 2, diffusion: v-prediction (WALT, Gupta et al. 2023, Eqs. 1-2) with
    z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps,   v = sqrt(abar_t) eps - sqrt(1 - abar_t) z0,
plain MSE on v, t uniform over [0, num_timesteps), a null text condition, and optional
self-conditioning (Chen et al. 2022): with some probability the model first predicts x0 without
gradient and receives that estimate as an extra input.

All randomness (t, noise, the self-conditioning coin) is passed in by the caller, so the caller
decides how it is seeded (the pretraining runner derives it from (seed, step), which makes a
resumed run reproduce an uninterrupted one exactly).
"""

from __future__ import annotations

import random
from typing import Callable, Optional

import numpy as np
import torch
from einops import rearrange
from torch import nn


# ----------------------------------------------------------------------------- helpers

def uint8_to_unit(video: torch.Tensor) -> torch.Tensor:
    """video: uint8 (b, T, H, W, 3) -> float (b, 3, T, H, W) in [-1, 1] (the tokenizer's input)."""
    if video.dtype != torch.uint8:
        raise TypeError(f"expected uint8 frames (b, T, H, W, 3), got dtype {video.dtype}")
    return rearrange(video, "b T H W c -> b c T H W").float().div(127.5).sub(1.0)


def seed_everything(seed: int) -> torch.Generator:
    """Seeds python's random, numpy and torch (the one seeding helper of the project: probes and
    pretraining); returns a CPU generator seeded alike (e.g. a DataLoader's batch order)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def unit_to_uint8(video: torch.Tensor) -> torch.Tensor:
    """video: float (b, 3, T, H, W) in [-1, 1] -> uint8 (b, T, H, W, 3), clamped."""
    return rearrange(video.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8), "b c T H W -> b T H W c")


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per example, in dB.

    pred, target: (b, ...) with values in a range of width `data_range` ([-1, 1] -> 2.0).
    Returns (b,): 10 log10(range^2 / mean squared error over all non-batch axes).
    """
    mse = (pred.float() - target.float()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range ** 2 / mse.clamp_min(1e-10))


# ----------------------------------------------------------------------------- tokenizer

class Reconstruct(nn.Module):
    """The autoencoder pass as one module (what DDP wraps): video -> (reconstruction, raw z).

    tokenizer: has encode_raw(video) -> (b, z, t, h, w) and decode_raw(z) -> (b, 3, T, H, W).
    """

    def __init__(self, tokenizer: nn.Module):
        super().__init__()
        self.tokenizer = tokenizer

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.tokenizer.encode_raw(video)
        return self.tokenizer.decode_raw(z), z


def tokenizer_loss(
    autoencoder: nn.Module,
    video: torch.Tensor,
    *,
    latent_weight: float = 1e-4,
    perceptual: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
    perceptual_weight: float = 0.0,
    adversarial: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    adversarial_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Autoencoder objective on raw (unnormalised) latents.

    autoencoder: video -> (reconstruction (b, 3, T, H, W), raw latents (b, z, t, h, w)), e.g.
      `Reconstruct(tokenizer)` or its DDP wrapper.
    video: (b, 3, T, H, W) float in [-1, 1], T = 1 + 4k, H and W multiples of 8.
    latent_weight: weight of mean(z^2), the latent-norm term (a deterministic stand-in for the
      KL term of a VAE: it bounds the latent scale without a posterior variance).
    perceptual(recon, video) -> scalar, adversarial(recon) -> scalar generator loss: optional
      hooks, used only when their weight is > 0.
    Returns (loss, metrics) with metrics 'recon', 'latent_norm', 'psnr' (batch mean, detached).
    """
    recon, z = autoencoder(video)
    if recon.shape != video.shape:
        raise ValueError(f"tokenizer returned {tuple(recon.shape)} for input {tuple(video.shape)}; "
                         "its encoder/decoder strides do not invert each other")
    recon_f, video_f = recon.float(), video.float()
    # L1 keeps edges sharp, MSE is what PSNR measures; both are standard for VQGAN-style AEs.
    rec = (recon_f - video_f).abs().mean() + (recon_f - video_f).pow(2).mean()
    latent_norm = z.float().pow(2).mean()
    loss = rec + latent_weight * latent_norm
    if perceptual is not None and perceptual_weight > 0:
        loss = loss + perceptual_weight * perceptual(recon, video)
    if adversarial is not None and adversarial_weight > 0:
        loss = loss + adversarial_weight * adversarial(recon)
    metrics = {"recon": rec.detach(), "latent_norm": latent_norm.detach(),
               "psnr": psnr(recon_f.detach(), video_f).mean()}
    return loss, metrics


@torch.no_grad()
def latent_statistics(encode_raw: Callable[[torch.Tensor], torch.Tensor], videos) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of raw latents over an iterable of video batches.

    videos: iterable of (b, 3, T, H, W) in [-1, 1]. Returns (mean (z,), std (z,)) in float32,
    accumulated in float64 so many batches do not lose precision.
    """
    total, total_sq, count = None, None, 0
    for video in videos:
        z = encode_raw(video).double()
        per_channel = rearrange(z, "b z t h w -> z (b t h w)")
        s, sq = per_channel.sum(1), per_channel.pow(2).sum(1)
        total = s if total is None else total + s
        total_sq = sq if total_sq is None else total_sq + sq
        count += per_channel.shape[1]
    if count == 0:
        raise ValueError("latent_statistics got no videos")
    mean = total / count
    std = (total_sq / count - mean.pow(2)).clamp_min(1e-12).sqrt()
    return mean.float(), std.float()


# ----------------------------------------------------------------------------- diffusion



def diffusion_loss(
    model: nn.Module,
    schedule,
    z0: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    *,
    self_condition: bool = False,
    self_cond_model: Optional[nn.Module] = None,
    independent_frames: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """v-prediction MSE for one batch.

    model: WALT-like, forward(z_t, timesteps, text=None, self_cond=None, independent_frames=None)
      -> v (b, z, t, h, w).
    schedule: has add_noise(z0, noise, t), velocity(z0, noise, t), predict_x0(z_t, v, t).
    z0: (b, z, t, h, w) normalised clean latents. t: (b,) long in [0, num_timesteps).
    noise: like z0, standard normal.
    self_condition: when True, a first pass (no gradient) predicts x0, which the second pass
      receives as `self_cond`; when False the model gets `self_cond=None` (zeros).
    self_cond_model: module for the no-gradient pass (default `model`); a DDP runner passes the
      unwrapped module so the extra forward does not touch gradient synchronisation.
    independent_frames: (b,) bool, True where the example is a stack of unrelated images (no
      attention across its latent frames), or None (all clips).
    Returns (loss, metrics) with metrics 'mse' (detached).
    """
    a, s = schedule.coefficients_on_device(t, z0)
    z_t = a * z0 + s * noise                 # schedule.add_noise
    target = a * noise - s * z0              # schedule.velocity
    self_cond = None
    if self_condition:
        with torch.no_grad():
            # `is None`, not `or`: a compiled module (OptimizedModule) refuses bool()/len().
            first = (model if self_cond_model is None else self_cond_model)(z_t, t, text=None, self_cond=None,
                                               independent_frames=independent_frames)
            self_cond = (a * z_t - s * first.float()).to(z_t.dtype)   # schedule.predict_x0
    v = model(z_t, t, text=None, self_cond=self_cond, independent_frames=independent_frames)
    loss = (v.float() - target.float()).pow(2).mean()
    return loss, {"mse": loss.detach()}


# ----------------------------------------------------------------------------- EMA

class EMA:
    """Exponential moving average of a module's floating-point parameters (float32 shadow).

    decay: target decay; the effective decay warms up as min(decay, (1 + n) / (10 + n)) after
    n updates, so early checkpoints are not dominated by the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.num_updates = 0
        self.shadow = {k: p.detach().float().clone() for k, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        names = list(self.shadow)
        params = dict(model.named_parameters())
        shadow = [self.shadow[k] for k in names]
        current = [params[k].detach().float() for k in names]
        torch._foreach_lerp_(shadow, current, 1.0 - d)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Writes the averaged weights into `model` (buffers are left as they are)."""
        params = dict(model.named_parameters())
        for k, v in self.shadow.items():
            params[k].copy_(v)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise ValueError(f"EMA state does not match the model; differing keys: {sorted(missing)[:5]}")
        self.decay = state["decay"]
        self.num_updates = state["num_updates"]
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)
