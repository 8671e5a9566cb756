"""DDIM sampling (Song et al. 2021) for a v-prediction model; WALT samples with 50 DDIM steps.

One step from timestep t to an earlier s, with abar = the schedule's cumulative alpha:
    x0  = sqrt(abar_t) z_t - sqrt(1 - abar_t) v        (schedule.predict_x0)
    eps = sqrt(abar_t) v   + sqrt(1 - abar_t) z_t      (schedule.predict_eps)
    sigma = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s)
    z_s = sqrt(abar_s) x0 + sqrt(1 - abar_s - sigma^2) eps + sigma * fresh noise
eta = 0 is deterministic. With a zero-terminal-SNR schedule abar at the last timestep is 0, so
the first step's x0 is -v and eps is z_t: the formulas stay finite.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


def ddim_timesteps(num_timesteps: int, steps: int) -> torch.Tensor:
    """Descending, distinct timesteps from num_timesteps - 1 down to 0, `steps` of them."""
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"DDIM steps must be in [1, {num_timesteps}], got {steps}")
    ts = torch.linspace(num_timesteps - 1, 0, steps).round().long()
    return torch.unique_consecutive(ts)


@torch.no_grad()
def ddim_sample(
    model: nn.Module,
    schedule,
    noise: torch.Tensor,
    *,
    steps: int = 50,
    eta: float = 0.0,
    self_condition: bool = True,
    generator: Optional[torch.Generator] = None,
    independent_frames: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Samples clean latents from starting noise.

    model: forward(z_t (b, z, t, h, w), timesteps (b,) long, text, self_cond, independent_frames) -> v.
    schedule: has alphas_cumprod (num_timesteps,), predict_x0, predict_eps.
    noise: (b, z, t, h, w) standard normal; it fixes the samples when eta = 0.
    self_condition: feed the previous step's x0 estimate back (as during training).
    generator: for the fresh noise when eta > 0.
    independent_frames: (b,) bool, True to sample stacks of unrelated images, or None.
    Returns x0: (b, z, t, h, w) in normalised latent units, float32.
    """
    abar = schedule.alphas_cumprod.to(noise.device, torch.float64)
    b = noise.shape[0]
    z = noise.float()
    x0 = None
    timesteps = ddim_timesteps(len(abar), steps).tolist()
    for i, t in enumerate(timesteps):
        t_b = torch.full((b,), t, dtype=torch.long, device=noise.device)
        v = model(z, t_b, text=None, self_cond=x0 if self_condition else None,
                  independent_frames=independent_frames).float()
        x0 = schedule.predict_x0(z, v, t_b).float()
        eps = schedule.predict_eps(z, v, t_b).float()
        a_t = float(abar[t])
        a_s = float(abar[timesteps[i + 1]]) if i + 1 < len(timesteps) else 1.0
        sigma = 0.0
        if eta > 0 and a_s < 1.0 and a_t < 1.0:
            sigma = eta * ((1 - a_s) / (1 - a_t) * (1 - a_t / a_s)) ** 0.5
        z = a_s ** 0.5 * x0 + max(0.0, 1 - a_s - sigma ** 2) ** 0.5 * eps
        if sigma > 0:
            z = z + sigma * torch.randn(z.shape, generator=generator, device=z.device)
    return z
