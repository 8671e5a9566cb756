"""Causal tokenizer: shapes, causality in time, latent statistics."""

import pytest
import torch

from walt.causal_conv import CausalConv3d


def _video(b=1, T=9, H=16, W=16):
    return torch.rand(b, 3, T, H, W) * 2 - 1


@pytest.mark.parametrize("T, t", [(1, 1), (5, 2), (9, 3), (17, 5)])
def test_latent_shape(tiny_tokenizer, T, t):
    z = tiny_tokenizer.encode(_video(T=T, H=8, W=16))
    assert z.shape == (1, 8, t, 1, 2)


def test_decode_inverts_the_shapes(tiny_tokenizer):
    video = _video(T=9)
    with torch.no_grad():
        out = tiny_tokenizer.decode(tiny_tokenizer.encode(video))
    assert out.shape == video.shape


@pytest.mark.parametrize("k", [0, 1])
def test_future_frames_leave_earlier_latents_unchanged(tiny_tokenizer, k):
    """Latent frame j covers frames <= 4j; changing frames > 4k leaves latents <= k unchanged."""
    video = _video(T=9)
    changed = video.clone()
    changed[:, :, 4 * k + 1:] = torch.rand_like(changed[:, :, 4 * k + 1:])
    with torch.no_grad():
        a, b = tiny_tokenizer.encode(video), tiny_tokenizer.encode(changed)
    torch.testing.assert_close(a[:, :, :k + 1], b[:, :, :k + 1], rtol=0, atol=0)
    assert not torch.allclose(a[:, :, k + 1:], b[:, :, k + 1:])


def test_frame0_latent_depends_on_frame0_only(tiny_tokenizer):
    video = _video(T=9)
    with torch.no_grad():
        clip = tiny_tokenizer.encode(video)
        alone = tiny_tokenizer.encode(video[:, :, :1])
    torch.testing.assert_close(clip[:, :, :1], alone, rtol=1e-5, atol=1e-5)


def test_decoder_is_causal(tiny_tokenizer):
    z = torch.randn(1, 8, 3, 2, 2)
    changed = z.clone()
    changed[:, :, 2] += 1
    with torch.no_grad():
        a, b = tiny_tokenizer.decode(z), tiny_tokenizer.decode(changed)
    torch.testing.assert_close(a[:, :, :5], b[:, :, :5], rtol=0, atol=0)  # frames of latents 0-1


def test_causal_conv_pads_past_only():
    conv = CausalConv3d(1, 1, 3, stride=(2, 1, 1))
    x = torch.randn(1, 1, 17, 4, 4)
    assert conv(x).shape[2] == 9
    y = x.clone()
    y[:, :, 1:] = 0
    torch.testing.assert_close(conv(x)[:, :, 0], conv(y)[:, :, 0])


def test_latent_stats_normalise_and_round_trip(tiny_tokenizer):
    video = _video(T=5)
    with torch.no_grad():
        raw = tiny_tokenizer.encode_raw(video)
        mean, std = torch.linspace(-1, 1, 8), torch.linspace(0.5, 2, 8)
        tiny_tokenizer.set_latent_stats(mean, std)
        z = tiny_tokenizer.encode(video)
        torch.testing.assert_close(z, (raw - mean.view(1, -1, 1, 1, 1)) / std.view(1, -1, 1, 1, 1))
        torch.testing.assert_close(tiny_tokenizer.decode(z), tiny_tokenizer.decode_raw(raw),
                                   rtol=1e-4, atol=1e-4)
    assert {"latent_mean", "latent_std"} <= set(tiny_tokenizer.state_dict())


@pytest.mark.parametrize("shape, match", [((1, 3, 8, 16, 16), "1 \\+ 4k"),
                                          ((1, 3, 5, 12, 16), "multiples of 8")])
def test_bad_video_shapes_are_explained(tiny_tokenizer, shape, match):
    with pytest.raises(ValueError, match=match):
        tiny_tokenizer.encode(torch.zeros(shape))
