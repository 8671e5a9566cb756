"""What the two image / video pairs share (PixArt-alpha / Latte, SD 1.5 / AnimateDiff): the SD
VAE applied frame by frame, DDPM-style noise from the pipeline's own scheduler, the frame
conventions of the two arms, and capture by forward hooks inside the library's own forward.

  video uint8 (b, T, H, W, 3)
    -> (b, 3, T, H, W) in [-1, 1]; image arm: frames are independent images;
       video arm: a single image (T = 1) is tiled over the model's clip length
    -> SD VAE per frame: z0 = (posterior mean - shift) * scaling_factor   (b, z, t, h, w), t = T
    -> z_t = scheduler.add_noise(z0, eps, t) = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps
    -> the library model's OWN forward, hooks on the requested blocks; the hook of the deepest
       block raises `_StopForward`, so no later block runs
    -> {block: (b, t, h', w', D) float32}

Why hooks instead of a re-implemented forward: the captured tensors are, by construction, the
ones the library's forward computes (every preamble step: caption projection, AdaLN-single
embedding, temporal position embedding, time embedding, per-frame repeats), and a change of the
library's forward cannot silently diverge from ours. The exception stops the pass exactly after
the deepest block, which the CallCounter tests check.
"""

from __future__ import annotations

import abc
import hashlib
import json
from pathlib import Path
from typing import Callable, Mapping

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from backbones.base import NoiseLevel, log_snr_from_abar, resolve_blocks, walt_equivalent_t
from backbones.hf_common import (ClipShapeError, ModelDirError, directory_digest, draw_noise,
                                 fingerprint_of, require_model_dir, video_to_unit_range)

# Schedulers whose add_noise is the variance-preserving DDPM form sqrt(abar) x0 + sqrt(1-abar) eps
# indexed by the integer training timestep. Any other sampler saved in a pipeline (DPM-Solver,
# Euler, ...) shares the training betas, so its config builds the DDPMScheduler it was trained with.
VP_SCHEDULERS = ("DDPMScheduler", "DDIMScheduler", "PNDMScheduler")


class _StopForward(Exception):
    """Raised by the hook of the deepest requested block: ends the library forward there."""


def capture_blocks(run: Callable[[], object],
                   modules: Mapping[int, nn.Module]) -> dict[int, Tensor]:
    """Runs `run()` (a call of the library model's own forward) with forward hooks on
    `modules[block]` and returns {block: the module's output} (tuples -> their first element,
    the hidden states a UNet down block passes on). Stops right after the deepest block.

    Raises RuntimeError if the forward finished without reaching the deepest block (a block map
    that does not match the model's forward)."""
    deepest = max(modules)
    out: dict[int, Tensor] = {}

    def make_hook(block: int):
        def hook(module, args, output):
            out[block] = output[0] if isinstance(output, tuple) else output
            if block == deepest:
                raise _StopForward
        return hook

    handles = [m.register_forward_hook(make_hook(b)) for b, m in modules.items()]
    try:
        run()
    except _StopForward:
        return out
    finally:
        for h in handles:
            h.remove()
    raise RuntimeError(f"the forward pass never reached block {deepest}; the block map of this "
                       f"adapter does not match the model's forward")


def plain_config(config) -> dict:
    """A diffusers config without its bookkeeping keys (`_name_or_path` is the folder it was
    loaded from: the same weights elsewhere must give the same fingerprint)."""
    return {k: v for k, v in dict(config).items() if not k.startswith("_")}


def size_name(num_params: int) -> str:
    """Parameter count -> the project's size label ('611m', '1p3b')."""
    if num_params < 1e6:    # tiny test models
        return f"{num_params / 1e3:.0f}k"
    if num_params < 1e9:
        return f"{num_params / 1e6:.0f}m"
    return f"{num_params / 1e9:.1f}b".replace(".", "p")


def load_scheduler(root: Path):
    """The pipeline's `scheduler/` as a VP (DDPM-style) scheduler: its own class when that is one
    of VP_SCHEDULERS, else DDPMScheduler built from its config (same betas, same
    alphas_cumprod). Returns (scheduler, class name of the saved scheduler)."""
    import diffusers

    cfg_path = root / "scheduler" / "scheduler_config.json"
    if not cfg_path.is_file():
        raise ModelDirError(f"no scheduler/scheduler_config.json in '{root}'; point at the "
                            f"pipeline root (the folder with model_index.json)")
    saved = json.loads(cfg_path.read_text()).get("_class_name", "DDPMScheduler")
    if saved in VP_SCHEDULERS:
        cls = getattr(diffusers, saved)
        return cls.from_pretrained(root, subfolder="scheduler", local_files_only=True), saved
    cfg = diffusers.DDPMScheduler.load_config(root, subfolder="scheduler", local_files_only=True)
    return diffusers.DDPMScheduler.from_config(cfg), saved


def noise_level(scheduler, t) -> NoiseLevel:
    """DDPM timestep index t (larger = more noise) -> (native t, log abar / (1 - abar), WALT t)."""
    t = int(t)
    n = len(scheduler.alphas_cumprod)
    if not 0 <= t < n:
        raise ValueError(f"timestep {t} outside this scheduler's [0, {n}); larger t = more noise")
    abar = float(scheduler.alphas_cumprod[t])
    log_snr = log_snr_from_abar(abar)
    return NoiseLevel(native=float(t), log_snr=log_snr, walt_t=walt_equivalent_t(log_snr))


def load_text_encoder(root: Path, what: str, device, dtype):
    """`text_encoder/` + `tokenizer/` of the pipeline (transformers classes named in the config)."""
    import transformers

    enc_dir = require_model_dir(root / "text_encoder", ("T5EncoderModel", "CLIPTextModel", "t5",
                                                        "clip_text_model"), f"{what} text encoder")
    tok_dir = root / "tokenizer"
    if not tok_dir.is_dir():
        raise ModelDirError(f"{what}: no tokenizer/ in '{root}'; the null-text embedding needs the "
                            f"pipeline's tokenizer (download the whole pipeline folder)")
    arch = (json.loads((enc_dir / "config.json").read_text()).get("architectures") or [None])[0]
    cls = getattr(transformers, arch or "AutoModel")
    encoder = cls.from_pretrained(enc_dir, local_files_only=True).to(device, dtype).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
    return tokenizer, encoder.requires_grad_(False)


class LatentDiffusionBackbone(nn.Module, abc.ABC):
    """Base of the four pair adapters: SD-VAE encoding, DDPM-style noise, frame conventions,
    fingerprint. A subclass sets `null_hidden` (the cached null text), `blocks_of()` (block ->
    module), `_run(z_t, t)` (the library forward), `_to_grid(...)` (a captured tensor ->
    (b, t, h', w', D)), `_resolution_multiple()`, `_weights_dirs()`, `_configs()` and, for a
    video arm, `_check_frames(T)`.

    root: the pipeline folder (vae/, scheduler/, text_encoder/, tokenizer/, the model's folder).
    variant: 'image' (frames are independent images) | 'video' (single images tiled to
      `num_frames`). vae_batch: frames per VAE call (memory bound at 512 x 512).
    """

    family = ""
    variant = ""

    def __init__(self, root: Path, vae, scheduler, scheduler_saved: str, device, dtype,
                 num_frames: int | None, vae_batch: int, preprocessing: dict):
        super().__init__()
        self.root = root
        self.vae = vae.to(device, dtype).eval().requires_grad_(False)
        self.scheduler = scheduler
        self.scheduler_saved = scheduler_saved
        self.dtype = dtype
        self.num_frames = num_frames
        self.vae_batch = vae_batch
        self.vae_scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self._preprocessing = dict(preprocessing, dtype=str(dtype),
                                   latent="vae posterior mean, (z - shift) * scaling_factor",
                                   scheduler=type(scheduler).__name__,
                                   scheduler_saved=scheduler_saved)
        self._fingerprint: str | None = None
        self.first_frames: int | None = None

    def use_first_frames(self, n: int | None) -> "LatentDiffusionBackbone":
        """Longer clips are cut to their first `n` frames before encoding (None: keep all), so
        both arms of a pair see the same frames (e.g. Latte's 16 of a 17-frame task clip)."""
        if n is not None and int(n) < 1:
            raise ValueError(f"first_frames must be a positive frame count or None, got {n}")
        self.first_frames = None if n is None else int(n)
        self._preprocessing["first_frames"] = self.first_frames
        self._fingerprint = None
        return self

    @property
    def device(self) -> torch.device:
        """Where the modules are now (the engine may move the backbone after building it)."""
        return next(self.vae.parameters()).device

    # ----------------------------------------------------------------- subclass interface
    @abc.abstractmethod
    def blocks_of(self) -> dict[int, nn.Module]:
        """{block index: module} whose outputs the hooks capture: 0 = the input embedding, then the blocks in order."""

    @abc.abstractmethod
    def _run(self, z_t: Tensor, t: Tensor) -> None:
        """z_t: (b, z, t, h, w) in the model dtype; t: (b,) long. Calls the library forward."""

    @abc.abstractmethod
    def _to_grid(self, block: int, h: Tensor, b: int, frames: int, hw: tuple[int, int]) -> Tensor:
        """A captured block output h -> (b, frames, h', w', D), the family's own layout undone with einops."""

    def _check_frames(self, frames: int) -> None:
        """Video arms: raise ClipShapeError for a frame count the model cannot take."""

    @abc.abstractmethod
    def _resolution_multiple(self) -> int:
        """Pixels per latent-grid cell the model's height and width must be a multiple of."""

    @abc.abstractmethod
    def _weights_dirs(self) -> list[Path]:
        """The weight folders whose digests enter the fingerprint."""

    @abc.abstractmethod
    def _configs(self) -> dict:
        """The library configs (VAE, denoiser, scheduler) that enter the fingerprint."""

    # ----------------------------------------------------------------- the contract
    @property
    def num_blocks(self) -> int:
        return len(self.blocks_of()) - 1

    def resolve_blocks(self, spec) -> list[int]:
        return resolve_blocks(spec, self.num_blocks)

    @property
    def fingerprint(self) -> str:
        """config + weights digest (model and VAE folders) + null text + preprocessing, 16 hex."""
        if self._fingerprint is None:
            # the text encoder enters through the null text it produced (hashing T5-XXL's
            # 19 GB of weights would cost a minute per process for one (1, 120, 4096) tensor)
            null = self.null_hidden.detach().float().cpu().contiguous().numpy().tobytes()
            self._fingerprint = fingerprint_of(
                cls=type(self).__name__, configs=self._configs(),
                weights=[directory_digest(d) for d in self._weights_dirs()],
                null_text=hashlib.sha256(null).hexdigest(),
                preprocessing=self._preprocessing, variant=self.variant)
        return self._fingerprint

    def noise_level(self, t) -> NoiseLevel:
        return noise_level(self.scheduler, t)

    def check_clip(self, video: Tensor) -> None:
        """Named errors for a resolution the VAE + model cannot take or a bad frame count."""
        if video.ndim != 5 or video.shape[-1] != 3:
            raise ClipShapeError(f"{self.name}: video must be uint8 (b, T, H, W, 3); got "
                                 f"{tuple(video.shape)}")
        H, W = video.shape[2], video.shape[3]
        m = self._resolution_multiple()
        if H % m or W % m:
            near = tuple(max(m, round(s / m) * m) for s in (H, W))
            raise ClipShapeError(f"{self.name}: {H} x {W} pixels is not a multiple of {m} (VAE "
                                 f"x patch / down-sampling); the nearest valid size is "
                                 f"{near[0]} x {near[1]}")
        if self.variant == "video" and video.shape[1] != 1:
            self._check_frames(video.shape[1])

    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        """uint8 (b, T, H, W, 3) -> z0 (b, z, t, h, w) float32, t = T (cut to `first_frames` if
        set; video arm: T = 1 tiled to `num_frames`). The SD VAE is an image VAE: every frame is
        encoded on its own."""
        if self.first_frames is not None:
            video = video[:, :self.first_frames]
        self.check_clip(video)
        x = video_to_unit_range(video.to(self.device))               # (b, 3, T, H, W)
        if self.variant == "video" and x.shape[2] == 1:
            x = repeat(x, "b c 1 H W -> b c T H W", T=self.num_frames)
        b, frames = x.shape[0], x.shape[2]
        frames_flat = rearrange(x, "b c T H W -> (b T) c H W").to(self.dtype)
        # the posterior mean, not a sample: features are a deterministic function of the clip
        # (the noise the probe studies comes from the scheduler, with fixed seeds)
        means = [self.vae.encode(chunk).latent_dist.mean
                 for chunk in frames_flat.split(self.vae_batch)]
        z = torch.cat(means).float()
        shift = self.vae.config.shift_factor or 0.0
        z = (z - shift) * self.vae.config.scaling_factor
        return rearrange(z, "(b t) z h w -> b z t h w", b=b, t=frames)

    def add_noise(self, z0: Tensor, t: Tensor, seeds: Tensor | None) -> Tensor:
        """z0 (b, z, t, h, w) float32, t (b,) long -> z_t with the scheduler's own add_noise."""
        noise = draw_noise(z0.shape, seeds, device=z0.device)
        return self.scheduler.add_noise(z0, noise, t)

    @torch.no_grad()
    def features(self, video: Tensor, t, blocks, seeds: Tensor | None = None) -> dict[int, Tensor]:
        """video: uint8 (b, T, H, W, 3); t: int or (b,) long DDPM timestep index in
        [0, num_train_timesteps) (larger = more noise); blocks: see `resolve_blocks`;
        seeds: (b,) long -> fixed noise. Returns {block: (b, t, h', w', D) float32} from one pass
        that stops after the deepest requested block."""
        blocks = self.resolve_blocks(blocks)
        z0 = self.encode(video)                                      # (b, z, t, h, w)
        b, frames, hw = z0.shape[0], z0.shape[2], tuple(z0.shape[3:])
        t = torch.as_tensor(t, dtype=torch.long, device=z0.device)
        t = t.expand(b) if t.ndim == 0 else t
        z_t = self.add_noise(z0, t, seeds)                           # (b, z, t, h, w)
        modules = self.blocks_of()
        captured = capture_blocks(lambda: self._run(z_t.to(self.dtype), t),
                                  {k: modules[k] for k in blocks})
        return {k: self._to_grid(k, captured[k], b, frames, hw).float() for k in blocks}

    def describe(self) -> dict:
        return {"name": self.name, "family": self.family, "variant": self.variant,
                "size": self.size, "num_blocks": self.num_blocks, "fingerprint": self.fingerprint}


def require_pipeline_root(path, subfolder: str, expected: str, what: str) -> Path:
    """The pipeline folder `path` whose `subfolder` holds a model of class `expected`; a path
    that is itself that subfolder gets an error naming its parent as the folder to give."""
    root = Path(path).expanduser()
    if (root / "config.json").is_file() and not (root / subfolder).is_dir():
        raise ModelDirError(f"{what}: '{root}' looks like the {subfolder}/ folder itself; point at "
                            f"the pipeline root that holds {subfolder}/, vae/, scheduler/, "
                            f"text_encoder/ and tokenizer/ (here probably '{root.parent}')")
    require_model_dir(root / subfolder, expected, f"{what} {subfolder}")
    return root


def load_vae(root: Path, what: str):
    """The pipeline's `vae/` (AutoencoderKL, the SD VAE for both pairs)."""
    import diffusers

    vae_dir = require_model_dir(root / "vae", "AutoencoderKL", f"{what} VAE")
    return diffusers.AutoencoderKL.from_pretrained(vae_dir, local_files_only=True)


__all__ = ["LatentDiffusionBackbone", "capture_blocks", "plain_config", "load_scheduler",
           "load_text_encoder", "load_vae", "require_pipeline_root", "noise_level", "size_name",
           "VP_SCHEDULERS"]
