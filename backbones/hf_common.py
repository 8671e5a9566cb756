"""What every adapter of a public library model shares: a local weights directory checked
before loading, the device / dtype policy, a fingerprint of config + weights + preprocessing,
the null-text embedding computed once, and the template of one probing pass.

  video uint8 (b, T, H, W, 3)
    -> check_clip: frames / resolution the model can take (named error with the nearest valid)
    -> model input: (b, 3, T, H, W) in [-1, 1] (diffusion VAEs) or the encoder's own normalisation
    -> encode (VAE + the model's own latent normalisation) -> z0
    -> noise with the model's own scheduler (add_noise / scale_noise) at the native level t
    -> forward through the embedding and the blocks, STOPPING after the deepest requested one
    -> {block: (b, t', h', w', D) float32}, extra tokens dropped, patch grid restored with einops

Nothing here downloads anything: every `from_pretrained` call gets a local directory and
`local_files_only=True`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

import torch
from torch import Tensor

from backbones.base import NoiseLevel, resolve_blocks
from walt.noise import eval_noise
from walt.training import uint8_to_unit
from walt_probe.errors import CheckpointError, ConfigurationError


class ModelDirError(CheckpointError):
    """A weights directory is missing, incomplete, or holds another model class."""


class ClipShapeError(ConfigurationError):
    """A clip's frame count or resolution is one the model cannot take."""


def require_model_dir(path: str | Path, expected: str | Iterable[str], what: str,
                      config_name: str = "config.json") -> Path:
    """The directory `path` holding `config_name` whose `_class_name` (diffusers) or
    `architectures` / `model_type` (transformers) names one of `expected`.

    what: the model's human name, for the messages ('CogVideoX transformer').
    Raises ModelDirError naming the path, what was found and what to point at instead.
    """
    expected = (expected,) if isinstance(expected, str) else tuple(expected)
    p = Path(path).expanduser()
    if not p.is_dir():
        raise ModelDirError(f"{what}: '{p}' is not a directory; download the weights and point "
                            f"at the folder that holds {config_name} (nothing is fetched at run "
                            f"time)")
    cfg_path = p / config_name
    if not cfg_path.is_file():
        subdirs = sorted(d.name for d in p.iterdir() if (d / config_name).is_file())
        hint = (f"; its subfolders {subdirs} do: point at the pipeline root or the right "
                f"subfolder" if subdirs else "")
        raise ModelDirError(f"{what}: no {config_name} in '{p}'{hint}")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelDirError(f"{what}: '{cfg_path}' is not valid JSON ({err})") from None
    found = [cfg.get("_class_name"), cfg.get("model_type"), *(cfg.get("architectures") or [])]
    found = [f for f in found if f]
    if not set(found) & set(expected):
        raise ModelDirError(f"{what}: '{p}' holds {found or 'an unknown model'}, expected "
                            f"{list(expected)}; point at the directory of the right model")
    return p


def pick_device_dtype(device: str = "auto", dtype: str = "auto") -> tuple[torch.device, torch.dtype]:
    """'auto' -> cuda + bfloat16 when a GPU is present, else cpu + float32 (bf16 matmuls on a
    CPU are slow and the features are compared in float32 by the tests)."""
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    if dtype == "auto":
        return dev, (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    return dev, getattr(torch, dtype)


def directory_digest(path: str | Path, patterns=("*.json", "*.safetensors", "*.bin")) -> str:
    """sha256 over the names and bytes of the weights and config files under `path` (sorted,
    recursive): the weights part of a fingerprint. Read once per process and cached."""
    path = Path(path)
    key = str(path.resolve())
    if key in _DIGESTS:
        return _DIGESTS[key]
    h = hashlib.sha256()
    files = sorted({f for pat in patterns for f in path.rglob(pat) if f.is_file()})
    for f in files:
        h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


_DIGESTS: dict[str, str] = {}


def fingerprint_of(**parts) -> str:
    """sha256 (16 hex) of a JSON of the parts (config, weights digest, preprocessing)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def video_to_unit_range(video: Tensor) -> Tensor:
    """uint8 (b, T, H, W, 3) -> float32 (b, 3, T, H, W) in [-1, 1] (what diffusion VAEs take)."""
    return uint8_to_unit(video)  # the project's one conversion


def draw_noise(shape, seeds: Tensor | None, device, dtype=torch.float32) -> Tensor:
    """Fixed per-example noise when seeds are given (cacheable features), else fresh noise."""
    if seeds is not None:
        return eval_noise(shape, seeds, device=device, dtype=dtype)
    return torch.randn(shape, device=device, dtype=dtype)


def null_text(tokenizer, text_encoder, max_length: int, device, dtype) -> tuple[Tensor, Tensor]:
    """The text encoder run once on the empty prompt: (hidden (1, n, d), attention mask (1, n)).

    Padded to `max_length` as the model's pipeline pads it, so the transformer sees the same
    sequence length it was trained with."""
    tokens = tokenizer([""], padding="max_length", max_length=max_length, truncation=True,
                       add_special_tokens=True, return_tensors="pt")
    with torch.no_grad():
        hidden = text_encoder(tokens.input_ids.to(device),
                              attention_mask=tokens.attention_mask.to(device))[0]
    return hidden.to(dtype), tokens.attention_mask.to(device)


class CallCounter:
    """Counts forward calls of each module in a list (tests: no block past the deepest runs)."""

    def __init__(self, modules):
        self.counts = [0] * len(modules)
        self._handles = [m.register_forward_pre_hook(self._hook(i)) for i, m in enumerate(modules)]

    def _hook(self, i):
        def hook(module, args):
            self.counts[i] += 1
        return hook

    def remove(self):
        for h in self._handles:
            h.remove()


__all__ = ["ModelDirError", "ClipShapeError", "require_model_dir", "pick_device_dtype",
           "directory_digest", "fingerprint_of", "video_to_unit_range", "draw_noise",
           "null_text", "CallCounter", "NoiseLevel", "resolve_blocks"]
