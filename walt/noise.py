"""The forward diffusion process q(z_t | z_0) and the v-parameterisation (WALT Eqs. 1-2).

  z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps                 t in [0, num_timesteps)
  v   = sqrt(abar_t) eps - sqrt(1 - abar_t) z_0                 (the network's target)
  z_0 = sqrt(abar_t) z_t - sqrt(1 - abar_t) v,   eps = sqrt(1 - abar_t) z_t + sqrt(abar_t) v

The schedule is a closed form written here rather than taken from diffusers: diffusers is not
a dependency of this project (it would pull in huggingface_hub and friends for three lines of
arithmetic), the probing pipeline needs only q(z_t | z_0), and WALT's schedule is the linear
DDPM betas with the zero-terminal-SNR rescaling of Lin et al. 2023 (WALT Sec. 5.2, Table 3e),
which these few lines state exactly (same formulas as diffusers' `DDPMScheduler` with
`beta_schedule="linear"` / `"squaredcos_cap_v2"` and `rescale_betas_zero_snr=True`).
Tables are float64 for accuracy and cast to the latent's dtype at use.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def linear_betas(num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """DDPM linear betas, rescaled so the start/end match WALT Table 8 at 1000 steps.

    The 1000 / T rescaling pushes beta_T past 1 for short schedules (T < 20 at the defaults),
    which would make abar negative; such a schedule is refused rather than returned.
    """
    scale = 1000.0 / num_timesteps
    if beta_end * scale >= 1:
        raise ValueError(f"a linear schedule of {num_timesteps} steps reaches beta = "
                         f"{beta_end * scale:g} >= 1 (betas scale as 1000 / num_timesteps); use "
                         f"num_timesteps > {math.floor(1000 * beta_end)} or kind='cosine'")
    return torch.linspace(beta_start * scale, beta_end * scale, num_timesteps, dtype=torch.float64)


def cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Nichol & Dhariwal 2021: abar(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2)."""
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    abar = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)


def rescale_zero_terminal_snr(alphas_cumprod: Tensor) -> Tensor:
    """Lin et al. 2023, Alg. 1: shift/scale sqrt(abar) so the last step is pure noise (SNR = 0)
    while the first step keeps its value."""
    root = alphas_cumprod.sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * first / (first - last)
    return root ** 2


class NoiseSchedule:
    """Forward process and v-parameterisation helpers.

    kind: 'linear' (WALT default: betas 1e-4 .. 0.02) or 'cosine'.
    num_timesteps: diffusion steps; t indexes [0, num_timesteps).
    zero_terminal_snr: rescale so abar at the last step is exactly 0 (WALT's choice).

    Attributes: `alphas_cumprod` (num_timesteps,) float64 on the CPU.
    Every method takes latents (b, ...) and t (b,) long (or an int, broadcast over b).
    """

    def __init__(self, kind: str = "linear", num_timesteps: int = 1000,
                 zero_terminal_snr: bool = True):
        if kind == "linear":
            betas = linear_betas(num_timesteps)
        elif kind == "cosine":
            betas = cosine_betas(num_timesteps)
        else:
            raise ValueError(f"unknown noise schedule '{kind}'; use 'linear' or 'cosine'")
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        if zero_terminal_snr:
            alphas_cumprod = rescale_zero_terminal_snr(alphas_cumprod)
        self.kind = kind
        self.num_timesteps = num_timesteps
        self.zero_terminal_snr = zero_terminal_snr
        self.alphas_cumprod = alphas_cumprod

    @property
    def config(self) -> dict:
        return {"kind": self.kind, "num_timesteps": self.num_timesteps,
                "zero_terminal_snr": self.zero_terminal_snr}

    def coefficients_on_device(self, t: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        """(sqrt(abar_t), sqrt(1 - abar_t)) shaped (b, 1, ..., 1), gathered on `like`'s device.

        t: (b,) long on `like`'s device, not range-checked (training draws it in range). The same
        values as `_coefficients`, but t never moves to the host, so a training step issues no
        device synchronisation (it matters for small models on a GPU). The float32 tables are
        built once per device.
        """
        tables = self.__dict__.setdefault("_device_tables", {})
        table = tables.get(like.device)
        if table is None:
            abar = self.alphas_cumprod.to(like.device, torch.float64)
            table = tables[like.device] = (abar.sqrt().float(), (1 - abar).sqrt().float())
        shape = (-1,) + (1,) * (like.ndim - 1)
        return table[0][t].view(shape), table[1][t].view(shape)

    def _coefficients(self, t: Tensor | int, like: Tensor) -> tuple[Tensor, Tensor]:
        """(sqrt(abar_t), sqrt(1 - abar_t)), each shaped (b, 1, ..., 1) to broadcast over `like`."""
        t = torch.as_tensor(t, dtype=torch.long)
        if t.ndim == 0:
            t = t.expand(like.shape[0])
        if t.shape != (like.shape[0],):
            raise ValueError(f"timesteps must be an int or shape ({like.shape[0]},), got {tuple(t.shape)}")
        if bool((t < 0).any()) or bool((t >= self.num_timesteps).any()):
            raise ValueError(f"timesteps must lie in [0, {self.num_timesteps}); got min "
                             f"{int(t.min())}, max {int(t.max())}")
        abar = self.alphas_cumprod[t.cpu()]
        shape = (-1,) + (1,) * (like.ndim - 1)
        a = abar.sqrt().to(like.device, like.dtype).view(shape)
        s = (1 - abar).sqrt().to(like.device, like.dtype).view(shape)
        return a, s

    def add_noise(self, z0: Tensor, noise: Tensor, t: Tensor | int) -> Tensor:
        """z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) noise."""
        a, s = self._coefficients(t, z0)
        return a * z0 + s * noise

    def velocity(self, z0: Tensor, noise: Tensor, t: Tensor | int) -> Tensor:
        """v-target: sqrt(abar_t) noise - sqrt(1 - abar_t) z0."""
        a, s = self._coefficients(t, z0)
        return a * noise - s * z0

    def predict_x0(self, z_t: Tensor, v: Tensor, t: Tensor | int) -> Tensor:
        """Clean-latent estimate from a v prediction: sqrt(abar_t) z_t - sqrt(1 - abar_t) v."""
        a, s = self._coefficients(t, z_t)
        return a * z_t - s * v

    def predict_eps(self, z_t: Tensor, v: Tensor, t: Tensor | int) -> Tensor:
        """Noise estimate from a v prediction: sqrt(1 - abar_t) z_t + sqrt(abar_t) v."""
        a, s = self._coefficients(t, z_t)
        return s * z_t + a * v


def eval_noise(shape: tuple[int, ...] | torch.Size, seeds: Tensor, device=None,
               dtype: torch.dtype = torch.float32) -> Tensor:
    """Fixed Gaussian noise per example: row i is a function of (seeds[i], shape[1:]) only.

    shape: (b, ...) the noise shape; seeds: (b,) long, e.g. the examples' dataset indices.
    Drawn on the CPU with one generator per example, so the noise of an example does not depend
    on the batch it sits in, the device, or the CUDA RNG state: features are cacheable.
    """
    seeds = torch.as_tensor(seeds, dtype=torch.long).reshape(-1)
    if len(seeds) != shape[0]:
        raise ValueError(f"need one seed per example: shape {tuple(shape)} but {len(seeds)} seeds")
    rows = []
    for seed in seeds.tolist():
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        rows.append(torch.randn(tuple(shape[1:]), generator=gen, dtype=torch.float32))
    return torch.stack(rows).to(device=device, dtype=dtype)
