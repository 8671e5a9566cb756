"""Property tests (hypothesis) of the closed forms in walt/noise.py and walt/windows.py.

Each property holds for every schedule, timestep, shape and window that is drawn, not only for
the hand-picked cases in test_noise.py / test_windows.py. Examples are few and tiny so the file
runs in seconds; deadline=None because the first example pays for torch's warm-up.
"""

import math

import torch
from einops import rearrange
from hypothesis import given, settings
from hypothesis import strategies as st

from walt.noise import NoiseSchedule, cosine_betas, linear_betas
from walt.windows import clip_window, merge, partition, spatial_window, windows_per_example

FAST = settings(max_examples=25, deadline=None)

# Linear schedules need more than 20 steps (noise.linear_betas); 25 is the shortest drawn.
schedules = st.builds(NoiseSchedule, kind=st.sampled_from(["linear", "cosine"]),
                      num_timesteps=st.sampled_from([25, 64, 1000]),
                      zero_terminal_snr=st.booleans())


@FAST
@given(schedule=schedules, seed=st.integers(0, 2 ** 31 - 1), batch=st.integers(1, 4),
       data=st.data())
def test_add_noise_then_predict_from_the_true_v_recovers_x0_and_eps(schedule, seed, batch, data):
    t = torch.tensor(data.draw(st.lists(st.integers(0, schedule.num_timesteps - 1),
                                        min_size=batch, max_size=batch)))
    gen = torch.Generator().manual_seed(seed)
    z0 = torch.randn(batch, 3, 2, 2, generator=gen, dtype=torch.float64)
    eps = torch.randn(batch, 3, 2, 2, generator=gen, dtype=torch.float64)
    z_t, v = schedule.add_noise(z0, eps, t), schedule.velocity(z0, eps, t)
    torch.testing.assert_close(schedule.predict_x0(z_t, v, t), z0)
    torch.testing.assert_close(schedule.predict_eps(z_t, v, t), eps)
    # (z_t, v) is (z0, eps) rotated by the angle atan(sqrt((1 - abar) / abar)): norms agree.
    torch.testing.assert_close(z_t ** 2 + v ** 2, z0 ** 2 + eps ** 2)
    # Coefficients by hand for one example: a z0 + s eps with a^2 + s^2 = 1.
    abar = float(schedule.alphas_cumprod[t[0]])
    expected = math.sqrt(abar) * z0[0] + math.sqrt(1 - abar) * eps[0]
    torch.testing.assert_close(z_t[0], expected)


@FAST
@given(kind=st.sampled_from(["linear", "cosine"]), steps=st.sampled_from([25, 64, 1000]),
       zero_terminal_snr=st.booleans())
def test_snr_is_strictly_decreasing_and_abar_a_probability(kind, steps, zero_terminal_snr):
    s = NoiseSchedule(kind, steps, zero_terminal_snr=zero_terminal_snr)
    abar = s.alphas_cumprod
    assert abar.shape == (steps,) and abar.dtype == torch.float64
    assert bool(((abar >= 0) & (abar <= 1)).all())
    snr = abar / (1 - abar)
    assert bool((snr[1:] < snr[:-1]).all()), "SNR must fall with every step"
    if zero_terminal_snr:
        assert float(abar[-1]) == 0.0
        # Lin et al.: the rescale keeps the first step's sqrt(abar) exactly.
        plain = NoiseSchedule(kind, steps, zero_terminal_snr=False).alphas_cumprod
        assert math.isclose(float(abar[0]), float(plain[0]), rel_tol=1e-12)
    else:
        assert float(abar[-1]) > 0.0
        betas = linear_betas(steps) if kind == "linear" else cosine_betas(steps)
        torch.testing.assert_close(abar, torch.cumprod(1 - betas, 0))


@FAST
@given(steps=st.sampled_from([25, 100, 1000]))
def test_beta_tables_closed_forms(steps):
    lin = linear_betas(steps)
    scale = 1000 / steps
    assert math.isclose(float(lin[0]), 1e-4 * scale) and math.isclose(float(lin[-1]), 0.02 * scale)
    torch.testing.assert_close(lin[1:] - lin[:-1], torch.full((steps - 1,), (0.02 - 1e-4) * scale
                                                              / (steps - 1), dtype=torch.float64))
    cos = cosine_betas(steps)
    f = lambda x: math.cos((x / steps + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert math.isclose(float(cos[0]), 1 - f(1) / f(0), rel_tol=1e-9)
    assert float(cos.max()) <= 0.999 and math.isclose(float(cos[-1]), 0.999)


grids = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3))   # windows per axis


@FAST
@given(counts=grids, window=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
       batch=st.integers(1, 3), width=st.integers(1, 4), seed=st.integers(0, 1000), data=st.data())
def test_partition_then_merge_is_the_identity(counts, window, batch, width, seed, data):
    grid = tuple(n * w for n, w in zip(counts, window))
    x = torch.randn(batch, *grid, width, generator=torch.Generator().manual_seed(seed))
    windows = partition(x, window)
    per_example = windows_per_example(window, grid)
    assert per_example == math.prod(counts)
    assert windows.shape == (batch * per_example, math.prod(window), width)
    torch.testing.assert_close(merge(windows, window, grid), x, rtol=0, atol=0)
    # Window k is the block of the grid at its (b, it, ih, iw) index, tokens in (wt, wh, ww)
    # order (the order attention sees).
    k = data.draw(st.integers(0, windows.shape[0] - 1))
    b, rest = divmod(k, per_example)
    it, rest = divmod(rest, counts[1] * counts[2])
    ih, iw = divmod(rest, counts[2])
    (wt, wh, ww) = window
    block = x[b, it * wt:(it + 1) * wt, ih * wh:(ih + 1) * wh, iw * ww:(iw + 1) * ww]
    torch.testing.assert_close(windows[k], rearrange(block, "wt wh ww d -> (wt wh ww) d"),
                               rtol=0, atol=0)


@FAST
@given(counts=grids, window=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
       extra=st.tuples(st.integers(0, 4), st.integers(0, 4), st.integers(0, 4)))
def test_clip_window_clips_to_the_grid_and_rejects_non_tiling(counts, window, extra):
    grid = tuple(n * w for n, w in zip(counts, window))
    assert clip_window(window, grid) == window
    # Any side at least as large as the grid becomes the grid's side.
    bigger = tuple(g + e for g, e in zip(grid, extra))
    assert clip_window(bigger, grid) == grid
    assert spatial_window(grid) == (1, grid[1], grid[2])
    assert clip_window(spatial_window(grid), grid) == spatial_window(grid)
    # A side that does not divide its grid side is refused, naming the window (g - 1 never
    # divides g for g > 2).
    if grid[1] > 2:
        bad = (window[0], grid[1] - 1, window[2])
        try:
            clip_window(bad, grid)
        except ValueError as err:
            assert "does not tile" in str(err) and str(bad) in str(err)
        else:
            raise AssertionError(f"{bad} does not tile {grid} but was accepted")
