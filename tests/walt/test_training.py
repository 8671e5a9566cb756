"""Closed forms of the training objectives, the lr shape and EMA (CPU, milliseconds)."""

import math

import pytest
import torch
from torch import nn

from walt.noise import NoiseSchedule
from walt.training import (EMA, diffusion_loss, latent_statistics, psnr, tokenizer_loss, uint8_to_unit,
                           unit_to_uint8)
from readouts.optim import warmup_cosine


def test_psnr_closed_form():
    target = torch.zeros(2, 3, 5, 8, 8)
    assert torch.allclose(psnr(target + 0.1, target), torch.full((2,), 10 * math.log10(4 / 0.01)), atol=1e-4)


def test_uint8_round_trip():
    video = torch.randint(0, 256, (2, 5, 8, 8, 3), dtype=torch.uint8)
    x = uint8_to_unit(video)
    assert x.shape == (2, 3, 5, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(unit_to_uint8(x), video)


@pytest.mark.parametrize("steps,warmup", [(100, 10), (1000, 0)])
def test_warmup_cosine_shape(steps, warmup):
    f = [warmup_cosine(s, steps=steps, warmup=warmup, final=0.01, count_from=1) for s in range(steps)]
    if warmup:
        assert f[0] == pytest.approx(1 / warmup) and f[warmup - 1] == pytest.approx(1.0)
    after = f[warmup:]
    assert after[0] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(after, after[1:]))
    assert warmup_cosine(steps, steps=steps, warmup=warmup, final=0.01, count_from=1) == pytest.approx(0.01)


def test_ema_warmup_closed_form():
    model = nn.Linear(3, 2)
    ema = EMA(model, decay=0.999)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    d = min(0.999, 2 / 11)  # first update: (1 + n) / (10 + n) with n = 1
    assert torch.allclose(ema.shadow["weight"], d * start + (1 - d) * (start + 1.0), atol=1e-6)
    copy = nn.Linear(3, 2)
    ema.copy_to(copy)
    assert torch.equal(copy.weight, ema.shadow["weight"])


class Oracle(nn.Module):
    """Predicts the true v for known (z0, noise): the v-loss must be zero."""

    def __init__(self, schedule, z0, noise):
        super().__init__()
        self.schedule, self.z0, self.noise, self.calls = schedule, z0, noise, []

    def forward(self, z_t, t, text=None, self_cond=None, independent_frames=None):
        self.calls.append((z_t, self_cond))
        return self.schedule.velocity(self.z0, self.noise, t)


@pytest.mark.parametrize("self_condition", [False, True])
def test_diffusion_loss_oracle_is_zero(self_condition):
    schedule = NoiseSchedule("linear", 1000)
    z0, noise = torch.randn(3, 8, 2, 2, 2), torch.randn(3, 8, 2, 2, 2)
    t = torch.tensor([0, 500, 999])
    model = Oracle(schedule, z0, noise)
    loss, metrics = diffusion_loss(model, schedule, z0, t, noise, self_condition=self_condition)
    assert loss.item() == pytest.approx(0.0, abs=1e-10)
    assert len(model.calls) == (2 if self_condition else 1)
    z_t, sc = model.calls[-1]
    assert torch.allclose(z_t, schedule.add_noise(z0, noise, t), atol=1e-6)
    if self_condition:  # the second pass receives the first pass's x0 estimate
        assert torch.allclose(sc, z0, atol=1e-4)
    else:
        assert sc is None


def test_tokenizer_loss_identity_autoencoder():
    video = torch.rand(2, 3, 5, 8, 8) * 2 - 1
    loss, m = tokenizer_loss(lambda v: (v, v), video, latent_weight=0.5)
    assert m["recon"].item() == pytest.approx(0.0)
    assert loss.item() == pytest.approx(0.5 * video.pow(2).mean().item(), rel=1e-5)


def test_latent_statistics_match_torch():
    z = torch.randn(6, 4, 2, 3, 3) * torch.tensor([1.0, 2.0, 0.5, 3.0]).view(1, 4, 1, 1, 1) + 1.5
    mean, std = latent_statistics(lambda v: v, [z[:2], z[2:]])
    flat = z.transpose(0, 1).reshape(4, -1)
    assert torch.allclose(mean, flat.mean(1), atol=1e-5)
    assert torch.allclose(std, flat.std(1, unbiased=False), atol=1e-5)


def test_device_side_coefficients_match_the_schedule():
    from walt.noise import NoiseSchedule
    schedule = NoiseSchedule("linear")
    z0, noise = torch.randn(4, 8, 5, 4, 4), torch.randn(4, 8, 5, 4, 4)
    t = torch.tensor([0, 10, 500, 999])
    a, s = schedule.coefficients_on_device(t, z0)
    torch.testing.assert_close(a * z0 + s * noise, schedule.add_noise(z0, noise, t))
    torch.testing.assert_close(a * noise - s * z0, schedule.velocity(z0, noise, t))
