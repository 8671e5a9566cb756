"""Checkpoints: safetensors weights + a JSON sidecar with the constructor arguments.

  <name>.safetensors   the state dict (buffers included, e.g. the tokenizer's latent statistics)
  <name>.json          {"kind": "tokenizer" | "walt", "config": {...}, "format": 1, "meta": {...},
                        "sha256": <hex digest of the .safetensors bytes>}

Both files are written atomically (temp file in the same folder + os.replace), weights first,
so a reader that finds the JSON finds complete weights. Files honour the umask (mkstemp would
leave them 0600). Loading verifies the weights' sha256 against the sidecar (once per process
and file state: a rehash costs ~1 s per 500 MB) and refuses a mismatch with an IntegrityError
naming the file and the recovery; then rebuilds the module from the JSON and checks every
tensor's shape before copying, naming the first mismatch. A sidecar written before digests
existed (no "sha256") loads with a warning: its bytes cannot be verified.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from walt.tokenizer import Tokenizer
from walt.transformer import WALT
from walt_probe.errors import CheckpointError, IntegrityError  # noqa: F401  (CheckpointError re-exported)

FORMAT_VERSION = 1
KINDS = {"tokenizer": Tokenizer, "walt": WALT}
RECOVERY = ("restore it (shipped checkpoints: `git checkout -- checkpoints/`, or download the "
            "repository again) or re-train it with the command recorded in its sidecar's meta "
            "(walt-probe pretrain ... writes export/*.safetensors with a digest)")


def sidecar_path(path: str | Path) -> Path:
    """The JSON next to a weights file: walt.safetensors -> walt.json."""
    return Path(path).with_suffix(".json")


def _kind_of(module: nn.Module) -> str:
    for kind, cls in KINDS.items():
        if isinstance(module, cls):
            return kind
    raise TypeError(f"save_module saves Tokenizer or WALT modules, not {type(module).__name__}")


def umask_mode(mode: int = 0o666) -> int:
    """`mode` with the process umask applied: what open() would give a new file."""
    current = os.umask(0)
    os.umask(current)
    return mode & ~current


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        # mkstemp creates 0600 whatever the umask; the finished file gets what open() would give.
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Writes `text` via a temp file in the same folder + rename: a reader sees the old file or
    the whole new one, never half of it (every JSON / text record of the project goes here)."""
    path = Path(path)

    def write(tmp):
        with open(tmp, "w") as fh:
            fh.write(text)
    _atomic(path, write)


def save_module(module: nn.Module, path: str | Path, dtype: torch.dtype | None = None,
                meta: dict | None = None) -> Path:
    """Saves a Tokenizer or WALT to `path` (.safetensors) and its sidecar JSON.

    dtype: cast floating tensors (e.g. torch.bfloat16 for shipped checkpoints); None keeps them.
    meta: extra JSON-able facts to record (training steps, data, command).
    Returns the weights path.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"checkpoint path must end in .safetensors, got '{path}'")
    state = {}
    for key, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        state[key] = tensor.contiguous()
    sidecar = {"kind": _kind_of(module), "config": module.config, "format": FORMAT_VERSION,
               "meta": meta or {}}
    _atomic(path, lambda tmp: save_file(state, tmp, metadata={"kind": sidecar["kind"]}))
    sidecar["sha256"] = file_fingerprint(path)

    def write_json(tmp):
        with open(tmp, "w") as fh:
            json.dump(sidecar, fh, indent=2, sort_keys=True)
    _atomic(sidecar_path(path), write_json)
    return path


def read_sidecar(path: str | Path) -> dict:
    """The sidecar JSON of a weights file; CheckpointError when either file is missing or the
    sidecar is not one save_module wrote."""
    side = sidecar_path(path)
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint weights not found: '{path}'; check the path (gin: "
                              f"WALT_CHECKPOINT / TOKENIZER_CHECKPOINT)")
    if not side.is_file():
        raise CheckpointError(f"checkpoint '{path}' has no sidecar '{side}' (the JSON of "
                              f"constructor arguments written next to it by save_module); copy it "
                              f"along with the weights")
    try:
        sidecar = json.loads(side.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"checkpoint sidecar '{side}' is not JSON ({err}); {RECOVERY}") from None
    if not isinstance(sidecar, dict) or not {"kind", "config"} <= set(sidecar):
        raise CheckpointError(f"'{side}' is not a checkpoint sidecar (no 'kind' and 'config'); "
                              f"{RECOVERY}")
    return sidecar


_VERIFIED: dict = {}  # {(real path, size, mtime_ns): sha256} of weights files hashed by this process


def verify_weights(path: str | Path, sidecar: dict) -> str:
    """Checks `path`'s sha256 against sidecar['sha256'] and returns it; raises IntegrityError on
    a mismatch. Hashing happens once per process and file state (path, size, mtime)."""
    digest = file_fingerprint(path)
    want = sidecar.get("sha256")
    if want is None:
        warnings.warn(f"checkpoint '{path}' has no recorded sha256 (written before digests); its "
                      f"bytes cannot be verified. Re-export it to add one.", stacklevel=3)
    elif digest != want:
        raise IntegrityError(path, RECOVERY, f"its sha256 is {digest[:12]}... but its sidecar "
                                             f"{sidecar_path(path).name} records {str(want)[:12]}...")
    return digest


def load_state_checked(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copies `state` into `module`, casting to the module's dtypes; raises CheckpointError
    naming the first tensor whose shape differs (with both shapes), listing missing and
    unexpected keys, or naming a tensor with NaN / inf values."""
    own = module.state_dict()
    for key, mine in own.items():  # the model's order: the first mismatch is the earliest-built tensor
        if key in state and tuple(mine.shape) != tuple(state[key].shape):
            raise CheckpointError(
                f"{source}: tensor '{key}' has shape {tuple(state[key].shape)} in the checkpoint "
                f"but {tuple(mine.shape)} in the model; the checkpoint was saved for another size "
                f"or latent shape (check its .json config)")
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{source}: state dict does not match the model; missing "
                              f"{missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected "
                              f"{unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    # NaN / inf weights (damaged bytes in a file without a digest, a diverged export) would
    # otherwise surface much later as a "diverged" readout, blaming the wrong thing.
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{source}: tensor '{bad[0]}' holds NaN or inf values"
                              f"{f' (and {len(bad) - 1} more)' if len(bad) > 1 else ''}; the file is "
                              f"damaged or was exported from a diverged run: {RECOVERY}")
    cast = {k: v.to(own[k].dtype) for k, v in state.items()}
    module.load_state_dict(cast, strict=True)


def _load(path: str | Path, kind: str, config_overrides: dict, device) -> nn.Module:
    sidecar = read_sidecar(path)
    if sidecar.get("kind") != kind:
        other = {"walt": "WALT_CHECKPOINT", "tokenizer": "TOKENIZER_CHECKPOINT"}.get(sidecar.get("kind"))
        raise CheckpointError(f"'{path}' holds a {sidecar.get('kind')} checkpoint, not a {kind}"
                              + (f"; it belongs in {other}" if other else ""))
    verify_weights(path, sidecar)
    try:
        module = KINDS[kind](**{**sidecar["config"], **config_overrides})
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"the config in {sidecar_path(path)} does not build a {kind} ({err}); "
                              f"{RECOVERY}") from None
    try:
        state = load_file(str(path))
    except Exception as err:  # noqa: BLE001 - safetensors raises its own SafetensorError / OSError
        raise CheckpointError(f"checkpoint '{path}' cannot be read as safetensors ({err}); "
                              f"{RECOVERY}") from None
    load_state_checked(module, state, str(path))
    return module.to(device)


def load_tokenizer(path: str | Path, device="cpu") -> Tokenizer:
    """A Tokenizer (with its latent statistics) from `save_module`'s files."""
    return _load(path, "tokenizer", {}, device)


def load_walt(path: str | Path, variant: str | None = None, device="cpu") -> WALT:
    """A WALT from `save_module`'s files; `variant` overrides the saved one (same tensors, so a
    V-WALT checkpoint loads as I-WALT and vice versa)."""
    return _load(path, "walt", {"variant": variant} if variant else {}, device)


def file_fingerprint(path: str | Path) -> str:
    """sha256 hex digest of a file's bytes (checkpoint identity for the feature cache); computed
    once per process and file state (real path, size, mtime), as loading verifies it too."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _VERIFIED[key] = h.hexdigest()
    return _VERIFIED[key]
