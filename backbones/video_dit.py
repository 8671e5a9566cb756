"""What the video diffusion transformer adapters (CogVideoX, Wan, LTX-Video) share: the pipeline
folder, the probing pass, and the early stop.

  video uint8 (b, T, H, W, 3)
    -> check_clip                     frames / resolution the VAE and patchify take (named error)
    -> (b, 3, T, H, W) in [-1, 1]     video_to_unit_range
    -> encode                         the model's VAE (posterior mean) + its latent normalisation
                                      -> z0 (b, z, t, h, w) float32
    -> add_noise                      the model's own scheduler at the native timestep t
    -> the library transformer's OWN forward, observed by hooks on its block list: block 0 = the
       input of the first block (patch + position embedding, text tokens removed), block k = the
       output of block k; a hook raises after the deepest requested block, so no later block runs
    -> tokens_to_grid                 (b, n, D) -> (b, t', h', w', D) float32 with einops

Running the library's own forward (rather than a copy of its block loop) keeps the adapter equal
to the model by construction across library versions; the hooks cost nothing measurable.

Each family subclass supplies: check_clip, encode, add_noise / noise_level, transformer_call and
tokens_to_grid. The pipeline folder is the one `DiffusionPipeline.save_pretrained` writes:
transformer/, vae/, scheduler/, text_encoder/, tokenizer/.
"""

from __future__ import annotations

import abc
import hashlib
import json
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from backbones.base import NoiseLevel, causal_spans, resolve_blocks
from backbones.hf_common import (ClipShapeError, ModelDirError, directory_digest, draw_noise,
                                 fingerprint_of, video_to_unit_range)

PIPELINE_PARTS = ("transformer", "vae", "scheduler", "text_encoder", "tokenizer")


class _StopForward(Exception):
    """Raised by a block hook once the deepest requested block has run (caught in run_blocks)."""


def require_pipeline_dir(path: str | Path, what: str,
                         parts: Sequence[str] = PIPELINE_PARTS) -> Path:
    """The pipeline root `path` holding every subfolder in `parts` (named error otherwise)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ModelDirError(f"{what}: '{root}' is not a directory; download the pipeline "
                            f"(e.g. `huggingface-cli download <repo> --local-dir DIR`) and point "
                            f"at DIR (nothing is fetched at run time)")
    if (root / "config.json").is_file() and not (root / "transformer").is_dir():
        raise ModelDirError(f"{what}: '{root}' holds a single model, not a pipeline; point at the "
                            f"pipeline root that holds {list(parts)}")
    missing = [p for p in parts if not (root / p).is_dir()]
    if missing:
        raise ModelDirError(f"{what}: '{root}' lacks the pipeline subfolders {missing}; point at "
                            f"the pipeline root that holds {list(parts)}")
    return root


def load_scheduler(folder: Path):
    """The scheduler class its scheduler_config.json names, loaded from the folder."""
    import diffusers
    cls_name = json.loads((Path(folder) / "scheduler_config.json").read_text())["_class_name"]
    return getattr(diffusers, cls_name).from_pretrained(folder, local_files_only=True)


def pipeline_digest(root: Path) -> dict[str, str]:
    """Weights digests of the parts that shape the features (the text encoder enters the
    fingerprint through its output on the empty prompt instead: hashing ~10 GB of T5 weights
    would cost a minute per process)."""
    return {sub: directory_digest(root / sub) for sub in ("transformer", "vae", "scheduler")}


def nearest_valid(n: int, step: int, offset: int) -> int:
    """The nearest n' >= offset with (n' - offset) % step == 0 (e.g. 4k + 1 frames)."""
    k = max(0, round((n - offset) / step))
    return k * step + offset


def check_frames_and_size(video: Tensor, what: str, frame_step: int, frame_offset: int,
                          pixel_multiple: int) -> None:
    """Named errors for a clip the model cannot take: frames must be frame_step * k +
    frame_offset, height and width multiples of pixel_multiple (VAE compression x patch)."""
    if video.ndim != 5 or video.shape[-1] != 3 or video.dtype != torch.uint8:
        raise ClipShapeError(f"{what}: video must be uint8 (b, T, H, W, 3); got "
                             f"{tuple(video.shape)} {video.dtype}")
    _, frames, height, width, _ = video.shape
    if frames < frame_offset or (frames - frame_offset) % frame_step:
        near = nearest_valid(frames, frame_step, frame_offset)
        raise ClipShapeError(f"{what}: {frames} frames cannot be encoded; the model takes "
                             f"{frame_step}k + {frame_offset} frames (nearest valid: {near})")
    for name, size in (("height", height), ("width", width)):
        if size % pixel_multiple:
            near = max(pixel_multiple, round(size / pixel_multiple) * pixel_multiple)
            raise ClipShapeError(f"{what}: {name} {size} is not a multiple of {pixel_multiple} "
                                 f"(VAE compression x patch size); nearest valid: {near}")


def run_blocks(call: Callable[[], object], blocks: nn.ModuleList, wanted: Sequence[int]
               ) -> dict[int, Tensor]:
    """Run `call()` (the library model's own forward) and capture its token states.

    blocks: the model's block list (L modules); wanted: sorted indices in [0, L].
    Block 0 is the hidden-states input of blocks[0]; block k >= 1 is the (first) output of
    blocks[k - 1]. After the deepest wanted block a hook raises, so blocks past it never run.
    Returns {k: (b, n, D)} in the model's dtype.
    """
    out: dict[int, Tensor] = {}
    deepest = max(wanted)

    def pre_hook(module, args, kwargs):
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        out[0] = hidden
        if deepest == 0:
            raise _StopForward

    def post_hook(k):
        def hook(module, args, output):
            if k in wanted:
                # CogVideoX blocks return (video tokens, text tokens); the others a tensor
                out[k] = output[0] if isinstance(output, tuple) else output
            if k == deepest:
                raise _StopForward
        return hook

    handles = []
    if 0 in wanted:
        # prepend: the stop for block 0 fires before any other pre-hook sees a call of blocks[0]
        handles.append(blocks[0].register_forward_pre_hook(pre_hook, with_kwargs=True,
                                                           prepend=True))
    handles += [blocks[k - 1].register_forward_hook(post_hook(k)) for k in wanted if k >= 1]
    try:
        call()
    except _StopForward:
        pass
    finally:
        for h in handles:
            h.remove()
    missing = sorted(set(wanted) - set(out))
    if missing:
        raise RuntimeError(f"blocks {missing} were never reached by the model's forward")
    return {k: out[k] for k in wanted}


def timesteps_for_batch(t, batch: int, num_train_timesteps: int, what: str) -> Tensor:
    """int or (b,) -> (b,) long on the CPU, each in [0, num_train_timesteps)."""
    t = torch.as_tensor(t).long().reshape(-1).cpu()
    if t.numel() == 1:
        t = t.expand(batch).clone()
    if t.numel() != batch:
        raise ValueError(f"{what}: give one timestep or one per example; got {t.numel()} for "
                         f"batch {batch}")
    if int(t.min()) < 0 or int(t.max()) >= num_train_timesteps:
        raise ValueError(f"{what}: timestep {t.tolist()} outside [0, {num_train_timesteps - 1}] "
                         f"(0 = clean end, {num_train_timesteps - 1} = most noise)")
    return t


def size_name(num_params: int) -> str:
    """Parameter count -> a size label ('1.69b', '312m')."""
    if num_params >= 1e9:
        return f"{num_params / 1e9:.3g}b"
    return f"{num_params / 1e6:.3g}m"


def tensor_digest(x: Tensor) -> str:
    """sha256 (16 hex) of a tensor's float32 bytes (the null-text part of a fingerprint: it
    captures the text encoder, tokenizer and padding without hashing a 10 GB encoder)."""
    return hashlib.sha256(x.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


class VideoDiT(abc.ABC):
    """A diffusers video DiT pipeline as a Backbone (family subclasses fill in the pieces).

    transformer, vae, scheduler: the library modules (already on `device` in `dtype`);
    text: the cached null-text tensors the family's transformer call needs;
    weights: the weights part of the fingerprint (pipeline_digest of the folder, or a label for
    in-memory random weights); preprocessing: what else changes the features (fingerprint).
    """

    variant = "video"
    blocks_attr = "transformer_blocks"

    def __init__(self, transformer, vae, scheduler, text: dict[str, Tensor],
                 device: torch.device, dtype: torch.dtype, family: str, name: str | None,
                 size: str | None, preprocessing: dict, weights: dict | str):
        self.transformer, self.vae, self.scheduler = transformer, vae, scheduler
        self.text, self.device, self.dtype, self.family = text, device, dtype, family
        for module in (transformer, vae):
            module.requires_grad_(False).eval()
        self.blocks: nn.ModuleList = getattr(transformer, self.blocks_attr)
        self.num_blocks = len(self.blocks)
        self.feature_dim = self.inner_dim()
        self.size = size or size_name(sum(p.numel() for p in transformer.parameters()))
        self.name = name or f"{family}-{self.size}"
        self._fingerprint = fingerprint_of(
            family=family, transformer=dict(transformer.config), vae=dict(vae.config),
            scheduler=dict(scheduler.config), weights=weights,
            null_text={k: tensor_digest(v) for k, v in sorted(text.items())},
            preprocessing=dict(preprocessing, dtype=str(dtype)))

    # ---- filled in by each family ----
    @abc.abstractmethod
    def inner_dim(self) -> int:
        """Width D of the transformer's hidden states (the features' last axis)."""

    @abc.abstractmethod
    def check_clip(self, video: Tensor) -> None:
        """Raise ClipShapeError (naming the nearest valid shape) for a clip the model cannot take."""

    @abc.abstractmethod
    def encode(self, x: Tensor) -> Tensor:
        """(b, 3, T, H, W) in [-1, 1] (VAE dtype) -> z0 (b, z, t, h, w) float32, normalised."""

    @abc.abstractmethod
    def add_noise(self, z0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """z0, eps: (b, z, t, h, w) float32; t: (b,) long native index -> z_t float32."""

    @abc.abstractmethod
    def noise_level(self, t) -> NoiseLevel:
        """The noise level of native index t: native value, log-SNR and the WALT-equivalent t."""

    @abc.abstractmethod
    def transformer_call(self, zt: Tensor, t: Tensor) -> Callable[[], object]:
        """A closure calling the library transformer's forward on noised latents (model dtype)."""

    @abc.abstractmethod
    def tokens_to_grid(self, tokens: Tensor, latent_shape: tuple[int, ...]) -> Tensor:
        """(b, n, D) video tokens -> (b, t', h', w', D)."""

    @abc.abstractmethod
    def temporal_layout(self) -> tuple[int, int]:
        """(f, pt): the causal VAE encodes frame 0 alone and then f frames per latent frame; the
        transformer's temporal patch joins pt latent frames into one token frame."""

    # ---- the temporal layout ----
    def feature_spans(self, num_frames: int) -> Tensor:
        """(t', 2) float64 [start, stop): the frames each feature frame covers (backbones/base.py):
        the causal VAE's spans [0, 1), [1, 1 + f), ..., joined pt at a time."""
        f, pt = self.temporal_layout()
        latents = causal_spans(num_frames, f)                            # (t, 2)
        if len(latents) % pt:
            raise ValueError(f"{self.name}: {len(latents)} latent frames do not split into "
                             f"temporal patches of {pt}")
        return torch.stack([latents[0::pt, 0], latents[pt - 1::pt, 1]], dim=-1)

    # ---- the probing pass ----
    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @torch.no_grad()
    def latents(self, video: Tensor) -> Tensor:
        """uint8 (b, T, H, W, 3) -> z0 (b, z, t, h, w) float32 (VAE + latent normalisation)."""
        self.check_clip(video)
        x = video_to_unit_range(video).to(self.device, self.vae.dtype)   # (b, 3, T, H, W), [-1, 1]
        return self.encode(x)

    @torch.no_grad()
    def noised(self, z0: Tensor, t, seeds: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """z0 (b, z, t, h, w) -> (z_t float32 same shape, t (b,) long) at native timestep t."""
        tb = timesteps_for_batch(t, z0.shape[0], self.num_train_timesteps, self.name)
        eps = draw_noise(tuple(z0.shape), seeds, self.device, torch.float32)
        return self.add_noise(z0.float(), eps, tb), tb

    @torch.no_grad()
    def features_from_latents(self, z0: Tensor, t, blocks: Sequence[int],
                              seeds: Tensor | None = None) -> dict[int, Tensor]:
        """z0 (b, z, t, h, w) -> {block: (b, t', h', w', D) float32} from one stopped pass."""
        wanted = resolve_blocks(blocks, self.num_blocks)
        zt, tb = self.noised(z0, t, seeds)
        tokens = run_blocks(self.transformer_call(zt.to(self.dtype), tb.to(self.device)),
                            self.blocks, wanted)
        return {k: self.tokens_to_grid(v, tuple(z0.shape)).float() for k, v in tokens.items()}

    def features(self, video: Tensor, t, blocks: Sequence[int],
                 seeds: Tensor | None = None) -> dict[int, Tensor]:
        """video uint8 (b, T, H, W, 3), t native timestep (int or (b,) long), blocks in
        [0, num_blocks], seeds (b,) long or None -> {block: (b, t', h', w', D) float32}."""
        return self.features_from_latents(self.latents(video), t, blocks, seeds)


class FlowMatchTable:
    """The training table of a flow-matching scheduler, read with DDPM's direction.

    diffusers' FlowMatchEulerDiscreteScheduler holds, before any set_timesteps call, the N
    training timesteps in DESCENDING order (index 0 = sigma 1 = pure noise), already shifted
    (sigma = shift s / (1 + (shift - 1) s); unshifted where the model shifts per resolution at
    sampling, `use_dynamic_shifting`). The native index t used here counts from the clean end, as
    DDPM and WALT do: t = 0 is the least noise (sigma = shift(1 / N)), t = N - 1 is sigma = 1. The
    transformer is fed the table's timestep value 1000 sigma, exactly what the pipeline feeds it.

    scheduler: FlowMatchEulerDiscreteScheduler, or UniPCMultistepScheduler with use_flow_sigmas
    (what the published Wan 2.1 folders ship: the same shifted sigmas, built here as the
    FlowMatchEulerDiscreteScheduler of its flow_shift, whose scale_noise then noises).
    """

    def __init__(self, scheduler):
        from diffusers import FlowMatchEulerDiscreteScheduler
        cfg = scheduler.config
        if type(scheduler).__name__ == "UniPCMultistepScheduler" and cfg.get("use_flow_sigmas"):
            scheduler = FlowMatchEulerDiscreteScheduler(
                num_train_timesteps=cfg.num_train_timesteps, shift=cfg.flow_shift)
        elif not isinstance(scheduler, FlowMatchEulerDiscreteScheduler):
            raise ValueError(f"{type(scheduler).__name__} is not a flow-matching scheduler; "
                             f"expected FlowMatchEulerDiscreteScheduler or UniPC with "
                             f"use_flow_sigmas=True")
        self.scheduler = scheduler
        self.num_train_timesteps = len(scheduler.timesteps)
        # ascending in noise: index t = N - 1 - (the scheduler's own descending index)
        self.timesteps = scheduler.timesteps.flip(0).clone()
        self.sigmas = scheduler.sigmas[: self.num_train_timesteps].flip(0).clone()

    def add_noise(self, z0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """(1 - sigma_t) z0 + sigma_t eps via the scheduler's own scale_noise."""
        return self.scheduler.scale_noise(z0, self.timesteps[t].to(z0.device), eps)

    def model_timestep(self, t: Tensor) -> Tensor:
        """(b,) native index -> (b,) float timestep the transformer is fed (1000 sigma)."""
        return self.timesteps[t.cpu()]

    def noise_level(self, t) -> NoiseLevel:
        """native = sigma; SNR = ((1 - sigma) / sigma)^2."""
        from backbones.base import log_snr_from_sigma, walt_equivalent_t
        t = int(t)
        if not 0 <= t < self.num_train_timesteps:
            raise ValueError(f"timestep {t} outside [0, {self.num_train_timesteps - 1}]")
        sigma = float(self.sigmas[t])
        log_snr = log_snr_from_sigma(sigma)
        return NoiseLevel(native=sigma, log_snr=log_snr, walt_t=walt_equivalent_t(log_snr))


def ddpm_noise_level(alphas_cumprod: Tensor, t) -> NoiseLevel:
    """DDPM-style at timestep t: native = t, SNR abar / (1 - abar)."""
    from backbones.base import log_snr_from_abar, walt_equivalent_t
    t = int(t)
    if not 0 <= t < len(alphas_cumprod):
        raise ValueError(f"timestep {t} outside [0, {len(alphas_cumprod) - 1}]")
    log_snr = log_snr_from_abar(float(alphas_cumprod[t]))
    return NoiseLevel(native=float(t), log_snr=log_snr, walt_t=walt_equivalent_t(log_snr))


__all__ = ["VideoDiT", "FlowMatchTable", "run_blocks", "require_pipeline_dir",
           "check_frames_and_size", "nearest_valid", "load_scheduler", "pipeline_digest",
           "timesteps_for_batch", "ddpm_noise_level", "size_name", "tensor_digest"]
