"""Window partitioning and window attention."""

import pytest
import torch

from walt.layers import WindowSelfAttention
from walt.windows import clip_window, merge, partition, spatial_window


@pytest.mark.parametrize("window", [(1, 8, 8), (5, 4, 4), (5, 8, 8), (1, 2, 4), (5, 1, 1)])
def test_partition_then_merge_is_identity(window):
    x = torch.randn(2, 5, 8, 8, 6)
    grid = x.shape[1:4]
    w = clip_window(window, grid)
    windows = partition(x, w)
    assert windows.shape == (2 * (5 // w[0]) * (8 // w[1]) * (8 // w[2]), w[0] * w[1] * w[2], 6)
    torch.testing.assert_close(merge(windows, w, grid), x, rtol=0, atol=0)


def test_partition_groups_the_right_tokens():
    x = torch.arange(5 * 4 * 4).float().view(1, 5, 4, 4, 1)
    windows = partition(x, (5, 2, 2))
    # window 1 = the top-right 2 x 2 block in every frame
    expected = x[0, :, 0:2, 2:4, 0].reshape(-1)
    torch.testing.assert_close(windows[1, :, 0], expected)


def test_window_that_does_not_tile_is_rejected():
    with pytest.raises(ValueError, match="does not tile"):
        clip_window((5, 3, 3), (5, 8, 8))


def test_stw_on_one_latent_frame_equals_sw():
    attn = WindowSelfAttention(32, 4).eval()
    x = torch.randn(2, 1, 4, 4, 32)                     # one latent frame
    grid = x.shape[1:4]
    sw = spatial_window(grid)
    stw = clip_window((5, 4, 4), grid)                  # the STW window clipped to the frame
    assert stw == sw
    out_sw = merge(attn(partition(x, sw)), sw, grid)
    out_stw = merge(attn(partition(x, stw)), stw, grid)
    torch.testing.assert_close(out_stw, out_sw, rtol=0, atol=0)


def test_identity_mask_passes_values_through():
    attn = WindowSelfAttention(32, 4).eval()
    x = torch.randn(3, 10, 32)
    v = attn.qkv(x)[..., 64:]
    torch.testing.assert_close(attn(x, identity=True), attn.proj(v))
    mixed = attn(x, identity=torch.tensor([True, False, True]))
    torch.testing.assert_close(mixed[0], attn.proj(v)[0])
    torch.testing.assert_close(mixed[1], attn(x)[1])
