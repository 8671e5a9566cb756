"""WALT: I-WALT frame independence vs V-WALT mixing, one-pass capture, variants, conditioning."""

import pytest
import torch

from walt.transformer import WALT


def _latents(b=2, t=5, h=8, w=8):
    return torch.randn(b, 8, t, h, w)


@torch.no_grad()
def _frame_change(model, frame=3):
    z = _latents()
    changed = z.clone()
    changed[:, :, frame] = torch.randn_like(changed[:, :, frame])
    blocks = list(range(model.num_blocks + 1))
    a = model.forward_features(z, 200, blocks)
    b = model.forward_features(changed, 200, blocks)
    others = [i for i in range(z.shape[2]) if i != frame]
    return {l: (a[l][:, others] - b[l][:, others]).abs().max().item() for l in blocks}


def test_iwalt_frames_are_independent_at_every_block(tiny_walt):
    tiny_walt.variant = "image"
    diffs = _frame_change(tiny_walt)
    assert all(d == 0.0 for d in diffs.values()), diffs


def test_vwalt_frames_interact(tiny_walt):
    tiny_walt.variant = "video"
    diffs = _frame_change(tiny_walt)
    assert diffs[0] == 0.0 and diffs[1] == 0.0       # embedding and the first (SW) block
    assert all(diffs[l] > 1e-4 for l in range(2, tiny_walt.num_blocks + 1)), diffs


def test_variant_switch_keeps_the_parameters(tiny_walt):
    before = {k: v.clone() for k, v in tiny_walt.state_dict().items()}
    tiny_walt.variant = "image"
    assert tiny_walt.config["variant"] == "image"
    for k, v in tiny_walt.state_dict().items():
        assert torch.equal(v, before[k])
    with pytest.raises(ValueError, match="variant"):
        tiny_walt.variant = "audio"


def _count_block_calls(model):
    calls = []
    for i, block in enumerate(model.blocks, start=1):
        block.register_forward_pre_hook(lambda m, args, i=i: calls.append(i))
    return calls


@pytest.mark.parametrize("blocks", [[0], [2], [1, 3], [0, 1, 2, 3, 4], [4, 2]])
def test_one_pass_stops_at_deepest_block_and_matches_single_requests(tiny_walt, blocks):
    calls = _count_block_calls(tiny_walt)
    z = _latents(b=1)
    with torch.no_grad():
        together = tiny_walt.forward_features(z, 100, blocks)
        assert calls == list(range(1, max(blocks) + 1))     # ONE pass, no further than needed
        assert sorted(together) == sorted(set(blocks))
        for l in blocks:
            alone = tiny_walt.forward_features(z, 100, [l])
            torch.testing.assert_close(together[l], alone[l], rtol=0, atol=0)


def test_features_are_the_stream_of_forward(tiny_walt):
    z = _latents(b=1)
    with torch.no_grad():
        feats = tiny_walt.forward_features(z, 50, [tiny_walt.num_blocks])
        v = tiny_walt(z, torch.tensor([50]))
    assert feats[tiny_walt.num_blocks].shape == (1, 5, 8, 8, tiny_walt.width)
    assert v.shape == z.shape


def test_blocks_out_of_range_are_named(tiny_walt):
    with pytest.raises(ValueError, match=r"\[0, 4\]"):
        tiny_walt.forward_features(_latents(b=1), 0, [5])


def test_single_latent_frame_uses_identity_mask_in_stw(tiny_walt):
    """An image through V-WALT: STW blocks attend each token to itself, so V-WALT and I-WALT
    differ on one frame (I-WALT's STW blocks attend over the whole frame)."""
    z = _latents(b=1, t=1)
    with torch.no_grad():
        video = tiny_walt.forward_features(z, 0, [1, 2])
        tiny_walt.variant = "image"
        image = tiny_walt.forward_features(z, 0, [1, 2])
    torch.testing.assert_close(video[1], image[1], rtol=0, atol=0)   # SW block: same
    assert not torch.allclose(video[2], image[2])                      # STW block: identity vs SW


def test_independent_frames_flag_makes_vwalt_frames_independent(tiny_walt):
    flags = torch.tensor([True, True])
    z = _latents()
    changed = z.clone()
    changed[:, :, 4] += 1
    with torch.no_grad():
        a = tiny_walt.forward_features(z, 10, [4], independent_frames=flags)[4]
        b = tiny_walt.forward_features(changed, 10, [4], independent_frames=flags)[4]
    torch.testing.assert_close(a[:, :4], b[:, :4], rtol=0, atol=0)


def test_self_conditioning_and_text_paths():
    torch.manual_seed(0)
    model = WALT.from_size("tiny", text_dim=16, zero_init_gates=False).eval()
    z = _latents(b=2, t=2, h=4, w=4)
    with torch.no_grad():
        base = model(z, torch.tensor([5, 6]))
        null = model(z, torch.tensor([5, 6]), text=model.null_text.expand(2, -1, -1))
        texted = model(z, torch.tensor([5, 6]), text=torch.randn(2, 3, 16))
        sc = model(z, torch.tensor([5, 6]), self_cond=torch.randn_like(z))
    torch.testing.assert_close(base, null)              # no text == the learned null text
    assert not torch.allclose(base, texted) and not torch.allclose(base, sc)
    with pytest.raises(ValueError, match="text_dim"):
        WALT.from_size("tiny")(z, 0, text=torch.randn(2, 3, 16))


def test_zero_init_gates_start_as_identity_blocks():
    model = WALT.from_size("tiny").eval()
    z = _latents(b=1)
    with torch.no_grad():
        feats = model.forward_features(z, 500, [0, 4])
        v = model(z, 500)
    torch.testing.assert_close(feats[0], feats[4], rtol=0, atol=0)
    assert torch.count_nonzero(v) == 0


def test_other_spatial_grid_interpolates_position_embeddings(tiny_walt):
    with torch.no_grad():
        out = tiny_walt(_latents(b=1, t=5, h=4, w=8), 3)
    assert out.shape == (1, 8, 5, 4, 8)


def test_bf16_forward_runs(tiny_walt):
    model = tiny_walt.to(torch.bfloat16)
    with torch.no_grad():
        out = model(_latents(b=1).to(torch.bfloat16), 3)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
