"""Named model sizes: one table row per size, so a gin file picks a name, not five numbers.

`WALT_SIZES[name]` and `TOKENIZER_SIZES[name]` are constructor kwargs of `walt.transformer.WALT`
and `walt.tokenizer.Tokenizer`. Counts (walt/counts.py's `count_*` functions, on the meta device,
default latent shape, no text cross-attention):

  tiny   d=192,  L=4,  3 heads    2.19M   CPU tests
  small  d=256,  L=8,  4 heads    7.02M   shipped checkpoints (bf16 file < 16 MiB)
  40m    d=512,  L=12, 8 heads    40.4M   the base study (results/base_study); compiled at batch
                                          256 it trains at 37.6 % MFU on one H200 (small: 3-6 %;
                                          benchmarks/results/pretrain.md)
  284m   d=1024, L=22, 16 heads   287.4M  the paper's smallest model: D = 1024 is fixed by the
                                          readout parameter counts of its Tables 5-6
  724m   d=1408, L=30, 22 heads   733.3M
  1p9b   d=1920, L=42, 30 heads   1.894B

Why these depths and widths for 724m and 1p9b: the paper gives only the totals, so the ladder
keeps the 284m model's shape (width / depth ~ 46) and scales width and depth together, as the
DiT and ViT families do, rather than holding depth at 24 and widening (which would leave
284m at D = 832, contradicting D = 1024). A constant aspect ratio keeps "block at 2/3 of
depth" comparable across sizes (`resolve_blocks(0.66)`). Every width is a multiple of 128
and every head has 64 channels, so bf16 matmuls tile H100 tensor cores and SDPA takes its
flash kernel. Each count is within 3% of its name (tests/walt/test_sizes.py).

The named sizes train without text (the project's data have no captions), so text
cross-attention is off; `text_dim=...` turns it on for any size.

tiny/small/40m run at 17 x 64 x 64 (latents 5 x 8 x 8) with spatio-temporal windows 5 x 4 x 4,
the same window-to-grid ratio as the paper's 5 x 8 x 8 windows on 5 x 16 x 16 latents.
"""

from __future__ import annotations

_BIG = dict(patch_size=1, latent_channels=8, latent_shape=(5, 16, 16), mlp_ratio=4.0,
            adaln_lora_rank=2, self_condition=True, stw_window=(5, 8, 8), text_dim=None)
_SMALL = dict(_BIG, latent_shape=(5, 8, 8), stw_window=(5, 4, 4))

WALT_SIZES: dict[str, dict] = {
    "tiny": dict(_SMALL, width=192, depth=4, num_heads=3),
    "small": dict(_SMALL, width=256, depth=8, num_heads=4),
    "40m": dict(_SMALL, width=512, depth=12, num_heads=8),
    "284m": dict(_BIG, width=1024, depth=22, num_heads=16),
    "724m": dict(_BIG, width=1408, depth=30, num_heads=22),
    "1p9b": dict(_BIG, width=1920, depth=42, num_heads=30),
}

# Nominal parameter counts the names promise (checked to 3% by the tests and `visualize`).
WALT_NOMINAL: dict[str, float | None] = {
    "tiny": None, "small": None, "40m": None, "284m": 284e6, "724m": 724e6, "1p9b": 1.9e9}

TOKENIZER_SIZES: dict[str, dict] = {
    # CPU tests: the paper's topology at 1/8 of the channels and one residual block per level.
    "tiny": dict(base_channels=16, channel_mult=(1, 2, 2, 4), num_res_blocks=1,
                 latent_channels=8, temporal_downsample=(False, True, True)),
    # Shipped checkpoint: trainable on one GPU in minutes at 64 x 64.
    "small": dict(base_channels=32, channel_mult=(1, 2, 2, 4), num_res_blocks=1,
                  latent_channels=8, temporal_downsample=(False, True, True)),
    # The base study's: twice the channels of 'small' and 16 latent channels
    # (the 8-channel latents of 'tiny'/'small' cap held-out PSNR near 20 dB at 64 x 64, too lossy
    # for depth and tracks).
    "study": dict(base_channels=64, channel_mult=(1, 2, 2, 4), num_res_blocks=1,
                  latent_channels=16, temporal_downsample=(False, True, True)),
    # The paper's (WALT Table 8 / MAGVIT-v2): 128 base channels, multipliers 1,2,2,4, 4 blocks.
    "base": dict(base_channels=128, channel_mult=(1, 2, 2, 4), num_res_blocks=4,
                 latent_channels=8, temporal_downsample=(False, True, True)),
}


def _lookup(table: dict, name: str, what: str) -> dict:
    if name not in table:
        raise KeyError(f"unknown {what} size '{name}'; named sizes: {', '.join(table)}")
    return dict(table[name])


def walt_kwargs(name: str, **overrides) -> dict:
    """Constructor kwargs of the named WALT size, with `overrides` applied."""
    return {**_lookup(WALT_SIZES, name, "WALT"), **overrides}


def tokenizer_kwargs(name: str, **overrides) -> dict:
    """Constructor kwargs of the named tokenizer size, with `overrides` applied."""
    return {**_lookup(TOKENIZER_SIZES, name, "tokenizer"), **overrides}
