"""DDIM for v-prediction: timesteps, and exact recovery of a known x0 (CPU, milliseconds)."""

import pytest
import torch
from torch import nn

from walt.noise import NoiseSchedule
from walt.sampling import ddim_sample, ddim_timesteps


@pytest.mark.parametrize("steps", [2, 7, 50, 1000])
def test_ddim_timesteps_descending_distinct(steps):
    ts = ddim_timesteps(1000, steps)
    assert ts[0] == 999 and ts[-1] == 0 and len(ts) == steps
    assert bool((ts[1:] < ts[:-1]).all())


class KnownX0(nn.Module):
    """The v that makes predict_x0 return `x0` exactly: v = (sqrt(a) z_t - x0) / sqrt(1 - a)."""

    def __init__(self, schedule, x0):
        super().__init__()
        self.abar, self.x0, self.self_conds = schedule.alphas_cumprod, x0, []

    def forward(self, z_t, t, text=None, self_cond=None, independent_frames=None):
        self.self_conds.append(self_cond)
        a = self.abar[t].view(-1, 1, 1, 1, 1).to(z_t.dtype)
        return (a.sqrt() * z_t - self.x0) / (1 - a).sqrt()


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_recovers_known_x0(eta):
    schedule = NoiseSchedule("linear", 1000)  # zero terminal SNR: the first step has abar = 0
    x0 = torch.randn(2, 8, 2, 2, 2)
    model = KnownX0(schedule, x0)
    out = ddim_sample(model, schedule, torch.randn(2, 8, 2, 2, 2), steps=10, eta=eta,
                      generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, x0, atol=1e-4)
    assert model.self_conds[0] is None and torch.allclose(model.self_conds[1], x0, atol=1e-4)
