"""The two pretraining stages, each read top-down: data -> model -> loop -> checkpoints/exports.

  tokenizer: clips (N, T, H, W, 3) -> Reconstruct(tokenizer) -> tokenizer_loss -> Trainer;
             at each checkpoint: latent statistics, held-out PSNR, export, reconstruction sheet.
  diffusion: clips -> frozen tokenizer -> LatentBank (clip + per-frame image latents)
             -> WALT(variant) -> diffusion_loss (v-prediction) -> Trainer;
             at each checkpoint: held-out v-loss, export, DDIM sample sheet.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from pretraining.artifacts import (contact_sheet, count_training_flops, device_description,
                                        loss_curve, write_json)
from pretraining.data import (LatentBank, datasets_from, fingerprint_clips, iter_unit_batches,
                                   load_clips, tokenizer_batch)
from pretraining.loop import Dist, LoopConfig, Trainer, close_dist, init_dist, latest_checkpoint
from walt_probe.errors import CheckpointError, ConfigurationError
from walt.training import (Reconstruct, seed_everything, diffusion_loss, latent_statistics, psnr, tokenizer_loss,
                           uint8_to_unit, unit_to_uint8)

NUM_TIMESTEPS = 1000
VAL_TIMESTEPS = (100, 300, 500, 700, 900)


def _loop_config(cfg) -> LoopConfig:
    names = {f.name for f in dataclasses.fields(LoopConfig)}
    return LoopConfig(**{n: getattr(cfg, n) for n in names if hasattr(cfg, n)})


def _export(module, path: Path, dtype: str) -> str:
    """Writes `module` through walt.checkpoint.save_module; parameters in `dtype`, buffers fp32."""
    import copy
    from walt.checkpoint import file_fingerprint, save_module

    out = copy.deepcopy(module).cpu()
    if dtype == "bfloat16":
        for p in out.parameters():
            p.data = p.data.to(torch.bfloat16)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_module(out, path)
    return file_fingerprint(path)


def _video_row(video: torch.Tensor, every: int = 2) -> torch.Tensor:
    """(3, T, H, W) in [-1, 1] -> uint8 (T', H, W, 3), every `every`-th frame."""
    return unit_to_uint8(video[None, :, ::every])[0]


class _Run:
    """Shared plumbing of one stage invocation: folders, logging, resume policy, the record."""

    def __init__(self, cfg, run, save_config, d: Dist, resume: bool):
        self.cfg, self.run, self.d = cfg, run, d
        self.dir = run.path
        self.t0 = time.perf_counter()
        existing = latest_checkpoint(self.dir)
        if resume and existing is None:
            raise CheckpointError(f"--resume: no checkpoint under {self.dir / 'checkpoints'}; start "
                                  f"without --resume")
        if not resume and existing is not None:
            raise ConfigurationError(f"{self.dir} already holds checkpoints (newest {existing.name}); pass --resume "
                             f"to continue that run, or set Run.output_dir to a new folder")
        self.resume_from = existing if resume else None
        if d.is_main:
            self.dir.mkdir(parents=True, exist_ok=True)
            if save_config is not None:  # the caller's record of its configuration
                save_config(self.dir)
        self.evals: list[dict] = []

    def log(self, msg: str) -> None:
        if self.d.is_main:
            line = f"[{time.perf_counter() - self.t0:8.1f}s] {msg}"
            print(line, flush=True)
            with open(self.dir / "log.txt", "a") as fh:
                fh.write(line + "\n")

    def record(self, trainer: Trainer, extra: dict) -> dict:
        tp = trainer.throughput()
        losses = trainer.history["loss"]
        tail = losses[-min(100, len(losses)):] if losses else []
        rec = {
            "settings": self.cfg.settings(), "identity": trainer.identity, "seed": self.run.seed,
            "world_size": self.d.world_size, "device": device_description(self.d.device),
            "torch": torch.__version__, "step": trainer.step, "throughput": tp,
            "final_loss_mean_last_100": float(np.mean(tail)) if tail else None,
            "wall_seconds_this_invocation": time.perf_counter() - self.t0,
            "evals": self.evals, **extra}
        if self.d.is_main:
            write_json(self.dir / "run.json", rec)
        return rec

    def plots(self, trainer: Trainer, title: str) -> None:
        write_json(self.dir / "history.json", trainer.history)
        write_json(self.dir / "evals.json", self.evals)
        loss_curve(trainer.history, self.dir / "loss_curve.png", title=title)


def run_stage(cfg, run, save_config=None, *, resume: bool = False, stop_after: int | None = None) -> dict:
    """Runs cfg.stage in this process (one rank of a torchrun job, or alone); returns run.json's dict."""
    with deterministic_kernels(getattr(cfg, "deterministic", False)):
        d = init_dist(run.torch_device())
        try:
            seed_everything(run.seed)
            stage = tokenizer_stage if cfg.stage == "tokenizer" else diffusion_stage
            result = stage(cfg, run, save_config, d, resume=resume, stop_after=stop_after)
            result["is_main"] = d.is_main
            return result
        finally:
            close_dist(d)


def _deterministic_identity(cfg) -> dict:
    """{'deterministic': True} for a deterministic run, else {}: runs (and checkpoints) from
    before the setting existed keep their identity, so they still resume."""
    return {"deterministic": True} if getattr(cfg, "deterministic", False) else {}


@contextlib.contextmanager
def deterministic_kernels(enabled: bool):
    """With enabled: torch's deterministic algorithms, cuDNN deterministic and not autotuned, and
    cuBLAS's fixed workspace (CUBLAS_WORKSPACE_CONFIG, read when cuBLAS starts: set before the
    first matmul of the process) for the block; the previous settings are restored after.
    Seeds, data order and augmentation are reproducible without it (the CPU reruns bit for bit);
    on a GPU, kernels that accumulate in a varying order (atomics) are what it rules out."""
    if not enabled:
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
              torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[1], before[2]


# ----------------------------------------------------------------------------- tokenizer

def tokenizer_stage(cfg, run, save_config, d: Dist, *, resume: bool, stop_after: int | None) -> dict:
    from walt.tokenizer import Tokenizer

    r = _Run(cfg, run, save_config, d, resume)
    # 1. Data: every clip in memory on the device, checked against the configured shape.
    train = load_clips(datasets_from(cfg.train_data, "train"), num_frames=cfg.num_frames,
                       image_size=cfg.image_size, num_workers=cfg.num_workers, where="train data")
    val = None if cfg.val_data is None else load_clips(
        datasets_from(cfg.val_data, "val"), num_frames=cfg.num_frames, image_size=cfg.image_size,
        num_workers=cfg.num_workers, where="val data")
    data_fp = fingerprint_clips(train)
    clips = train.to(d.device)
    r.log(f"tokenizer stage: {len(train)} train clips {tuple(train.shape[1:])}, "
          f"{0 if val is None else len(val)} val clips, data {data_fp}")
    # 2. Model: the autoencoder pass as one module (what DDP wraps).
    torch.manual_seed(run.seed)
    tokenizer = Tokenizer.from_size(cfg.tokenizer_size).to(d.device)
    model = Reconstruct(tokenizer)
    identity = {"stage": "tokenizer", "tokenizer_size": cfg.tokenizer_size,
                "tokenizer_config": tokenizer.config, "batch_size": cfg.batch_size, "steps": cfg.steps,
                "seed": run.seed, "clip_shape": list(train.shape[1:4]), "data": data_fp,
                "latent_weight": cfg.latent_weight, "augment": getattr(cfg, "augment", False),
                **_deterministic_identity(cfg)}

    def loss_fn(step, m):
        video = uint8_to_unit(tokenizer_batch(clips, seed=run.seed, step=step, batch_size=cfg.batch_size,
                                              rank=d.rank, world_size=d.world_size,
                                              augment=getattr(cfg, "augment", False)))
        return tokenizer_loss(m, video, latent_weight=cfg.latent_weight)

    exports = {}

    @torch.no_grad()
    def on_save(step, tag, ema_model):
        # 3. The stored tokenizer: EMA weights + latent statistics of the training clips.
        tok = ema_model.tokenizer.eval()
        mean, std = latent_statistics(tok.encode_raw, iter_unit_batches(train[:cfg.stats_clips], d.device))
        tok.set_latent_stats(mean, std)
        row = {"step": step, "tag": tag, "latent_mean": mean.tolist(), "latent_std": std.tolist()}
        held_out = (val if val is not None else train)[-min(cfg.eval_clips, len(train)):]
        scores, sheet = [], []
        for video in iter_unit_batches(held_out, d.device):
            recon = tok.decode_raw(tok.encode_raw(video))
            scores.append(psnr(recon, video))
            if len(sheet) < 2 * cfg.num_samples:
                for v, rc in zip(video, recon):
                    sheet += [_video_row(v), _video_row(rc)]
        row["val_psnr"] = float(torch.cat(scores).mean())
        row["val_psnr_source"] = "val" if val is not None else "last train clips (no val data)"
        r.evals.append(row)
        r.log(f"step {step}: held-out PSNR {row['val_psnr']:.2f} dB, latent std {[round(s, 3) for s in std.tolist()]}")
        contact_sheet(sheet[:2 * cfg.num_samples], r.dir / "samples" / f"recon_step{step:07d}.png")
        if tag:
            exports[tag] = _export(tok, r.dir / "export" / f"tokenizer_{tag}.safetensors", cfg.export_dtype)
        if step == cfg.steps:
            exports["final"] = _export(tok, r.dir / "export" / "tokenizer.safetensors", cfg.export_dtype)
        r.plots(trainer, f"tokenizer ({cfg.tokenizer_size})")

    trainer = Trainer(model, _loop_config(cfg), r.dir, d, identity, loss_fn, on_save, r.log)
    if r.resume_from:
        trainer.resume_latest()
    # Model FLOPs of one step (forward + backward), for MFU; counted once, gradients discarded.
    # Counted on the eager module: FlopCounterMode sees every aten op there, while a compiled
    # graph would hide them (and compiling under the counter would waste a compilation).
    flops = count_training_flops(lambda: loss_fn(trainer.step, trainer.model)[0]) * d.world_size
    trainer.opt.zero_grad(set_to_none=True)
    trainer.train(stop_after)
    n_params = sum(p.numel() for p in tokenizer.parameters())
    return r.record(trainer, {"model_flops_per_step": flops, "parameters": n_params, "exports": exports,
                              "clips_per_step": cfg.batch_size})


# ----------------------------------------------------------------------------- diffusion

def diffusion_stage(cfg, run, save_config, d: Dist, *, resume: bool, stop_after: int | None) -> dict:
    from walt.checkpoint import file_fingerprint, load_tokenizer
    from walt.noise import NoiseSchedule, eval_noise
    from walt.sampling import ddim_sample
    from walt.transformer import WALT

    r = _Run(cfg, run, save_config, d, resume)
    # 1. Data: clips -> frozen tokenizer -> clip latents and per-frame image latents.
    tok_path = Path(cfg.tokenizer_checkpoint).expanduser()
    if not tok_path.is_file():
        raise CheckpointError(f"Pretrain.tokenizer_checkpoint {tok_path} does not exist; train one with "
                              f"experiments/pretrain_tokenizer_*.gin first")
    tokenizer = load_tokenizer(str(tok_path)).to(d.device).float().eval()
    train = load_clips(datasets_from(cfg.train_data, "train"), num_frames=cfg.num_frames,
                       image_size=cfg.image_size, num_workers=cfg.num_workers, where="train data")
    data_fp = fingerprint_clips(train)
    bank = LatentBank.encode(tokenizer, train, device=d.device, mirrored=getattr(cfg, "augment", False))
    val_bank = None
    if cfg.val_data is not None:
        val = load_clips(datasets_from(cfg.val_data, "val"), num_frames=cfg.num_frames,
                         image_size=cfg.image_size, num_workers=cfg.num_workers, where="val data")
        val_bank = LatentBank.encode(tokenizer, val[:256], device=d.device)
    r.log(f"diffusion stage ({cfg.variant}): {len(train)} clips -> latents {bank.latent_shape}, data {data_fp}")
    # 2. Model and noise schedule. Both variants start from the same seeded initialisation.
    torch.manual_seed(run.seed)
    model = WALT.from_size(cfg.walt_size, variant=cfg.variant, latent_shape=bank.latent_shape,
                           latent_channels=bank.clip_latents.shape[1]).to(d.device)
    schedule = NoiseSchedule(cfg.noise_schedule, NUM_TIMESTEPS, zero_terminal_snr=cfg.zero_terminal_snr)
    identity = {"stage": "diffusion", "walt_size": cfg.walt_size, "variant": cfg.variant,
                "walt_config": {k: v for k, v in model.config.items() if k != "variant"},
                "latent_shape": list(bank.latent_shape), "batch_size": cfg.batch_size, "steps": cfg.steps,
                "seed": run.seed, "data": data_fp, "tokenizer": file_fingerprint(str(tok_path)),
                "image_fraction": cfg.image_fraction, "self_cond_prob": cfg.self_cond_prob,
                "augment": getattr(cfg, "augment", False),
                **_deterministic_identity(cfg),
                "schedule": schedule.config}
    use_self_cond = bool(getattr(model, "self_condition", False)) and cfg.self_cond_prob > 0
    counting = [False]  # True while counting FLOPs: one plain forward + backward

    def loss_fn(step, m):
        b = bank.batch(variant=cfg.variant, seed=run.seed, step=step, batch_size=cfg.batch_size,
                       image_fraction=cfg.image_fraction, num_timesteps=NUM_TIMESTEPS,
                       rank=d.rank, world_size=d.world_size)
        sc = use_self_cond and b["self_cond_coin"] < cfg.self_cond_prob and not counting[0]
        return diffusion_loss(m, schedule, b["z0"], b["t"], b["noise"], self_condition=sc,
                              self_cond_model=trainer.forward_model,
                              independent_frames=b["independent_frames"])

    exports = {}
    n = cfg.num_samples

    @torch.no_grad()
    def held_out_loss(ema_model, lat_bank: LatentBank) -> dict:
        """v-MSE at fixed timesteps and fixed noise on held-out clips and image stacks."""
        out = {}
        z_clip = lat_bank.clip_latents[:cfg.eval_clips]
        tl = lat_bank.latent_shape[0]
        frames = torch.linspace(0, lat_bank.frame_latents.shape[1] - 1, tl).round().long()
        z_img = rearrange(lat_bank.frame_latents[:cfg.eval_clips, frames], "b t z h w -> b z t h w")
        for name, z0, flag in (("clips", z_clip, False), ("images", z_img, True)):
            flags = torch.full((len(z0),), flag, device=z0.device)
            noise = eval_noise(z0.shape, torch.arange(len(z0)), device=z0.device)
            vals = []
            for t in VAL_TIMESTEPS:
                tt = torch.full((len(z0),), t, dtype=torch.long, device=z0.device)
                vals.append(float(diffusion_loss(ema_model, schedule, z0, tt, noise,
                                                 self_condition=use_self_cond, independent_frames=flags)[0]))
            out[f"val_mse_{name}"] = float(np.mean(vals))
        return out

    @torch.no_grad()
    def on_save(step, tag, ema_model):
        row = {"step": step, "tag": tag}
        with torch.autocast(d.device.type, dtype=torch.bfloat16, enabled=trainer.bf16):
            row.update(held_out_loss(ema_model, val_bank or bank))
            # 3. DDIM samples from fixed noise: V-WALT draws clips and image stacks, I-WALT stacks.
            shape = (2 * n, *bank.clip_latents.shape[1:])
            noise = eval_noise(shape, torch.arange(2 * n), device=d.device)
            flags = torch.arange(2 * n, device=d.device) >= (n if cfg.variant == "video" else 0)
            z0 = ddim_sample(ema_model, schedule, noise, steps=cfg.sample_steps,
                             self_condition=use_self_cond, independent_frames=flags)
        rows = []
        for z, is_stack in zip(z0, flags.tolist()):
            if is_stack:  # each latent frame is an image: decode it alone
                images = tokenizer.decode(rearrange(z, "z t h w -> t z 1 h w"))   # (t, 3, 1, H, W)
                rows.append(unit_to_uint8(rearrange(images, "t c 1 H W -> 1 c t H W"))[0])
            else:
                rows.append(_video_row(tokenizer.decode(z[None])[0]))
        contact_sheet(rows, r.dir / "samples" / f"samples_step{step:07d}.png")
        r.evals.append(row)
        r.log(f"step {step}: held-out v-MSE clips {row['val_mse_clips']:.4f}, images {row['val_mse_images']:.4f}")
        name = f"walt_{cfg.walt_size}_{cfg.variant}"
        if tag:
            exports[tag] = _export(ema_model, r.dir / "export" / f"{name}_{tag}.safetensors", cfg.export_dtype)
        if step == cfg.steps:
            exports["final"] = _export(ema_model, r.dir / "export" / f"{name}.safetensors", cfg.export_dtype)
        r.plots(trainer, f"{'V' if cfg.variant == 'video' else 'I'}-WALT ({cfg.walt_size})")

    trainer = Trainer(model, _loop_config(cfg), r.dir, d, identity, loss_fn, on_save, r.log)
    if r.resume_from:
        trainer.resume_latest()
    # Model FLOPs of one step: forward + backward, plus the self-conditioning forward on the
    # expected fraction of steps (a forward is a third of forward + backward).
    counting[0] = True
    fwd_bwd = count_training_flops(lambda: _plain_loss(loss_fn, trainer, step=trainer.step)) * d.world_size
    counting[0] = False
    trainer.opt.zero_grad(set_to_none=True)
    flops = fwd_bwd * (1 + (cfg.self_cond_prob / 3 if use_self_cond else 0))
    trainer.train(stop_after)
    tokens = cfg.batch_size * int(np.prod(bank.latent_shape))
    return r.record(trainer, {"model_flops_per_step": flops, "parameters": sum(p.numel() for p in model.parameters()),
                              "exports": exports, "clips_per_step": cfg.batch_size,
                              "latent_tokens_per_step": tokens, "tokenizer_checkpoint": str(tok_path)})


def _plain_loss(loss_fn, trainer: Trainer, step: int) -> torch.Tensor:
    """One step's loss with bf16 autocast as in training (self-conditioning as drawn)."""
    with torch.autocast(trainer.d.device.type, dtype=torch.bfloat16, enabled=trainer.bf16):
        return loss_fn(step, trainer.model)[0]   # eager: see the tokenizer stage's FLOP count
