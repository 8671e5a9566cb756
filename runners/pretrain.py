"""`walt-probe pretrain`: train the tokenizer, then I-WALT or V-WALT, from one gin file.

  walt-probe pretrain --gin_file=experiments/pretrain_tokenizer_small.gin
  walt-probe pretrain --gin_file=experiments/pretrain_walt_small.gin --gin.VARIANT="'image'"
  walt-probe pretrain --gin_file=... --resume          # continue a killed run, same loss curve
  torchrun --nproc_per_node=4 -m runners.cli pretrain --gin_file=...     # DDP, same gin file

The stage (`Pretrain.stage`) picks what is trained:
  tokenizer: causal 3-D CNN autoencoder on clips (reconstruction + latent-norm term), then the
    latent normalisation statistics; reports held-out PSNR.
  diffusion: WALT with `Pretrain.variant` ('video' = V-WALT, 'image' = I-WALT) on latents of
    the same clips, v-prediction (walt/training.py; the batches: pretraining/data.py).

Outputs under Run.output_dir: checkpoints/ (resumable, with optimizer state), export/
(safetensors + JSON sidecars through walt.checkpoint at every named fraction and at the end),
samples/ (contact sheets), loss_curve.png, history.json, run.json (the whole configuration,
the data fingerprint, throughput), operative_config.gin.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from runners import gin_setup
from walt_probe.errors import ConfigurationError


@dataclasses.dataclass
class Pretrain:
    """Everything one pretraining run needs besides `Run` (output_dir, seed, device).

    Data
      train_data / val_data: a dataset of items with 'video' uint8 (T, H, W, 3), a mapping
        split -> dataset, or a Task (its 'train' / 'val' split is used). REQUIRED (train).
      num_frames, image_size: the clip shape the run is built for; data of another shape fail.
      num_workers: worker processes for reading / rendering the data once at start.
    Optimisation (both stages)
      steps, batch_size (global: split over DDP processes), lr, warmup, final_lr_ratio,
      weight_decay, grad_clip (0 = off), ema_decay (0 = off), precision ('auto' = bf16 on CUDA),
      compile (torch.compile the trained module: the autoencoder, or WALT for both passes of
      the self-conditioned loss), augment (each step's clips randomly mirrored left-right, and
      for the tokenizer also played backwards: the pool is rendered once and reused every epoch;
      the diffusion stage encodes the mirrored pool once too), deterministic (torch's
      deterministic algorithms, cuDNN without autotuning, a fixed cuBLAS workspace: what a
      bit-for-bit rerun on a GPU needs; slower, and an op without a deterministic kernel raises).
    Bookkeeping
      checkpoint_every: steps between regular checkpoints; async_checkpoints: write them from a
        background thread (state copied to host memory first); fractions: named fractions of the
        run that are checkpointed, exported and kept (paper Sec. 4.4: 5, 10, 20, 26, 50, 100 %).
      log_every: steps between loss syncs (one host sync each), num_samples / sample_steps:
        DDIM samples (or reconstructions) drawn into the contact sheet at each checkpoint;
        eval_clips: held-out clips scored at each checkpoint (PSNR / v-MSE).
      export_dtype: 'float32' | 'bfloat16' for the exported safetensors.
    Tokenizer stage
      tokenizer_size, latent_weight (latent-norm term), perceptual_weight / adversarial_weight
      (hooks, 0 = off), stats_clips (clips used for the latent statistics).
    Diffusion stage
      walt_size, variant ('video' | 'image'), tokenizer_checkpoint (a tokenizer export),
      image_fraction (V-WALT: probability that a step is an image step), self_cond_prob,
      noise_schedule ('linear' | 'cosine'), zero_terminal_snr.
    """

    stage: str = "tokenizer"
    train_data: Any = None
    val_data: Any = None
    num_frames: int = 17
    image_size: int = 64
    num_workers: int = 0
    steps: int = 1000
    batch_size: int = 32
    lr: float = 5e-4
    warmup: int = 500
    final_lr_ratio: float = 0.01
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    precision: str = "auto"
    compile: bool = False
    augment: bool = False
    deterministic: bool = False
    async_checkpoints: bool = False
    checkpoint_every: int = 1000
    fractions: tuple = (0.05, 0.1, 0.2, 0.26, 0.5, 1.0)
    log_every: int = 50
    num_samples: int = 4
    eval_clips: int = 64
    sample_steps: int = 50
    export_dtype: str = "float32"
    tokenizer_size: str = "tiny"
    latent_weight: float = 1e-4
    perceptual_weight: float = 0.0
    adversarial_weight: float = 0.0
    stats_clips: int = 256
    walt_size: str = "tiny"
    variant: str = "video"
    tokenizer_checkpoint: Optional[str] = None
    image_fraction: float = 0.25
    self_cond_prob: float = 0.5
    noise_schedule: str = "linear"
    zero_terminal_snr: bool = True

    def validate(self) -> None:
        """Raises ConfigurationError naming the first setting that cannot work, and the fix."""
        choices = {"stage": ("tokenizer", "diffusion"), "variant": ("video", "image"),
                   "precision": ("auto", "bf16", "fp32"), "export_dtype": ("float32", "bfloat16")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigurationError(f"Pretrain.{name} = {getattr(self, name)!r}; choose one of {allowed}")
        if self.train_data is None:
            raise ConfigurationError("Pretrain.train_data is not set; bind it in the gin file, e.g. "
                                     "Pretrain.train_data = @train/SyntheticClips() (or @train/TaskVideos() for a Task's videos)")
        if self.stage == "diffusion" and not self.tokenizer_checkpoint:
            raise ConfigurationError("the diffusion stage needs Pretrain.tokenizer_checkpoint (the "
                                     "export/tokenizer.safetensors of a tokenizer run)")
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigurationError("Pretrain.steps and Pretrain.batch_size must be >= 1")
        if not 0 <= self.image_fraction <= 1 or not 0 <= self.self_cond_prob <= 1:
            raise ConfigurationError("Pretrain.image_fraction and Pretrain.self_cond_prob are probabilities in [0, 1]")

    def settings(self) -> dict:
        """The plain settings (data objects replaced by their repr), for run.json."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = v if isinstance(v, (int, float, str, bool, type(None), tuple, list)) else type(v).__name__
        return out


def add_arguments(parser) -> None:
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest checkpoint in Run.output_dir (same gin files)")
    parser.add_argument("--stop_after", type=int, default=None, metavar="N",
                        help="stop after N more updates, leaving a checkpoint (for time-limited jobs)")


def main(args, gin_args: gin_setup.GinArgs) -> int:
    import gin

    from pretraining import stages as pretrain_stages

    # The gin-wrapped classes carry the bindings of the parsed files. Bad settings, a missing
    # tokenizer, a foreign or corrupt checkpoint raise WaltProbeErrors (runners/cli.py: exit 2);
    # a diverged loss raises NonFiniteLossError (exit 1).
    cfg, run = gin.get_configurable("Pretrain")(), gin.get_configurable("Run")()
    cfg.validate()
    result = pretrain_stages.run_stage(
        cfg, run, lambda run_dir: gin_setup.save_operative_config(run_dir, gin_args), resume=args.resume,
        stop_after=args.stop_after)
    if result.get("is_main", True):
        print(f"walt-probe pretrain: {cfg.stage} run written to {run.path}")
    return 0
