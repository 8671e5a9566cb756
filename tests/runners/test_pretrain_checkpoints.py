"""The shipped checkpoints load, and their bytes are the ones checkpoints/README.md records."""

import re
from pathlib import Path

import pytest

CKPT = Path(__file__).resolve().parents[2] / "checkpoints"


def recorded_hashes() -> dict[str, str]:
    rows = re.findall(r"^\| (\S+\.safetensors) \|.*\| ([0-9a-f]{64}) \|$", (CKPT / "README.md").read_text(), re.M)
    return dict(rows)


def test_readme_lists_three_files_under_size_limits():
    hashes = recorded_hashes()
    assert set(hashes) == {"tokenizer_small.safetensors", "iwalt_small.safetensors", "vwalt_small.safetensors"}
    sizes = [(CKPT / name).stat().st_size for name in hashes]
    assert max(sizes) < 16 * 2 ** 20 and sum(sizes) < 40e6


@pytest.mark.parametrize("name", ["tokenizer_small.safetensors", "iwalt_small.safetensors", "vwalt_small.safetensors"])
def test_hash_matches_and_loads(name):
    import torch
    from walt.checkpoint import file_fingerprint, load_tokenizer, load_walt

    import json
    path = CKPT / name
    assert file_fingerprint(path) == recorded_hashes()[name]
    # The sidecar records the same digest; loading verifies it (walt/checkpoint.py).
    assert json.loads(path.with_suffix(".json").read_text())["sha256"] == recorded_hashes()[name]
    if name.startswith("tokenizer"):
        tok = load_tokenizer(path)
        assert not torch.allclose(tok.latent_std, torch.ones_like(tok.latent_std))
    else:
        model = load_walt(path)
        assert model.variant == ("image" if name.startswith("iwalt") else "video")
        assert model.width == 256 and model.num_blocks == 8
