"""Parameter counts of the named sizes (walt/sizes.py), built on the meta device: no memory,
milliseconds. Apart from the size table so that the table imports no model (the models read it)."""

from __future__ import annotations

import torch

from walt.tokenizer import Tokenizer
from walt.transformer import WALT


def count_walt_parameters(name: str, variant: str = "video", **overrides) -> int:
    """Parameters of a named WALT, built on the meta device (no memory, milliseconds)."""
    with torch.device("meta"):
        model = WALT.from_size(name, variant=variant, **overrides)
    return sum(p.numel() for p in model.parameters())


def count_tokenizer_parameters(name: str) -> dict[str, int]:
    """{'encoder': n, 'decoder': n, 'total': n} of a named tokenizer, built on the meta device."""
    with torch.device("meta"):
        tok = Tokenizer.from_size(name)
    enc = sum(p.numel() for p in tok.encoder.parameters())
    dec = sum(p.numel() for p in tok.decoder.parameters())
    return {"encoder": enc, "decoder": dec, "total": enc + dec}
