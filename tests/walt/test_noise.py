"""Forward process closed forms and reproducible evaluation noise."""

import pytest
import torch

from walt.noise import NoiseSchedule, eval_noise


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_t0_is_clean_latent_up_to_first_alpha(kind):
    s = NoiseSchedule(kind)
    z0, eps = torch.randn(3, 8, 5, 4, 4), torch.randn(3, 8, 5, 4, 4)
    a0 = s.alphas_cumprod[0]
    expected = a0.sqrt().float() * z0 + (1 - a0).sqrt().float() * eps
    torch.testing.assert_close(s.add_noise(z0, eps, 0), expected)
    assert abs(float(a0) - 1) < 1e-3  # first alpha is ~1: z_0 is ~the clean latent
    gap = (s.add_noise(z0, eps, torch.zeros(3, dtype=torch.long)) - z0).abs()
    bound = (1 - a0.sqrt()) * z0.abs() + (1 - a0).sqrt() * eps.abs()
    assert bool((gap <= bound.float() + 1e-6).all())


def test_linear_betas_match_walt_and_zero_terminal_snr():
    s = NoiseSchedule("linear")
    betas = 1 - s.alphas_cumprod[1:] / s.alphas_cumprod[:-1]
    assert s.alphas_cumprod.shape == (1000,)
    assert float(s.alphas_cumprod[-1]) == 0.0                  # zero terminal SNR
    assert abs(float(1 - s.alphas_cumprod[0]) - 1e-4) < 1e-5   # beta_1 = 1e-4 kept
    assert bool((betas > 0).all()) and bool((s.alphas_cumprod[1:] <= s.alphas_cumprod[:-1]).all())
    plain = NoiseSchedule("linear", zero_terminal_snr=False).alphas_cumprod
    torch.testing.assert_close(plain, torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000,
                                                                       dtype=torch.float64), 0))


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_v_parameterisation_round_trips(kind):
    s = NoiseSchedule(kind)
    z0, eps = torch.randn(4, 8, 2, 3, 3, dtype=torch.float64), torch.randn(4, 8, 2, 3, 3, dtype=torch.float64)
    t = torch.tensor([0, 200, 700, 999])
    z_t, v = s.add_noise(z0, eps, t), s.velocity(z0, eps, t)
    torch.testing.assert_close(s.predict_x0(z_t, v, t), z0)
    torch.testing.assert_close(s.predict_eps(z_t, v, t), eps)


def test_bad_timesteps_are_named():
    with pytest.raises(ValueError, match=r"\[0, 1000\)"):
        NoiseSchedule().add_noise(torch.zeros(1, 2), torch.zeros(1, 2), 1000)


def test_eval_noise_is_per_example_and_reproducible():
    a = eval_noise((3, 8, 5, 4, 4), torch.tensor([7, 8, 9]))
    b = eval_noise((3, 8, 5, 4, 4), torch.tensor([7, 8, 9]))
    c = eval_noise((2, 8, 5, 4, 4), torch.tensor([9, 7]))       # other batch, other order
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(c[0], a[2], rtol=0, atol=0)
    torch.testing.assert_close(c[1], a[0], rtol=0, atol=0)
    assert not torch.equal(a[0], a[1])
    torch.randn(10)  # the global RNG does not enter
    torch.testing.assert_close(eval_noise((1, 8, 5, 4, 4), torch.tensor([8]))[0], a[1], rtol=0, atol=0)


def test_too_short_linear_schedule_is_refused():
    """At T steps the linear betas end at 0.02 * 1000 / T: T <= 20 would give beta >= 1 and a
    negative abar (found by the SNR property test)."""
    with pytest.raises(ValueError, match=r"num_timesteps > 20 or kind='cosine'"):
        NoiseSchedule("linear", 10)
    with pytest.raises(ValueError, match="beta = 1 >= 1"):
        NoiseSchedule("linear", 20)
    assert float(NoiseSchedule("linear", 21, zero_terminal_snr=False).alphas_cumprod[-1]) > 0
    assert float(NoiseSchedule("cosine", 10, zero_terminal_snr=False).alphas_cumprod[-1]) >= 0


def test_config_rebuilds_the_schedule_and_bad_arguments_are_named():
    s = NoiseSchedule("cosine", 50, zero_terminal_snr=False)
    assert s.config == {"kind": "cosine", "num_timesteps": 50, "zero_terminal_snr": False}
    torch.testing.assert_close(NoiseSchedule(**s.config).alphas_cumprod, s.alphas_cumprod)
    with pytest.raises(ValueError, match="schedule 'sigmoid'; use 'linear' or 'cosine'"):
        NoiseSchedule("sigmoid")
    with pytest.raises(ValueError, match=r"\[0, 50\); got min -1, max 3"):
        s.add_noise(torch.zeros(2, 4), torch.zeros(2, 4), torch.tensor([-1, 3]))
    with pytest.raises(ValueError, match=r"an int or shape \(3,\), got \(2,\)"):
        s.add_noise(torch.zeros(3, 4), torch.zeros(3, 4), torch.tensor([1, 2]))


def test_eval_noise_shape_dtype_and_seed_count():
    noise = eval_noise((2, 3, 4), [5, 6], dtype=torch.float64)
    assert noise.shape == (2, 3, 4) and noise.dtype == torch.float64
    torch.testing.assert_close(noise.float(), eval_noise((2, 3, 4), torch.tensor([5, 6])))
    with pytest.raises(ValueError, match=r"shape \(3, 4\) but 2 seeds"):
        eval_noise((3, 4), [1, 2])


def test_noise_follows_the_latents_device_and_ignores_the_default_dtype():
    """Coefficients and eval noise land on the requested device (the meta device stands in for
    a GPU here), and eval noise is drawn in float32 whatever torch's default dtype is, so cached
    features do not change with it."""
    z = torch.empty(2, 4, device="meta")
    assert NoiseSchedule().add_noise(z, z, 3).device.type == "meta"
    assert NoiseSchedule().velocity(z, z, torch.tensor([1, 2])).device.type == "meta"
    assert eval_noise((2, 4), [0, 1], device="meta").device.type == "meta"
    # 64 values per row: torch draws rows of 16 or more through a vectorised path whose values
    # depend on the dtype drawn in (shorter rows would agree by accident).
    reference = eval_noise((2, 64), [0, 1])
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.testing.assert_close(eval_noise((2, 64), [0, 1]), reference, rtol=0, atol=0)
    finally:
        torch.set_default_dtype(previous)
