"""The optimisation loop shared by both pretraining stages: AdamW with warmup + cosine, gradient
clipping, EMA, bf16 autocast, optional torch.compile, DDP, atomic checkpoints, exact resume.

A stage hands the loop a module and `loss_fn(step, model) -> (loss, metrics)`; everything random
inside a step is derived from (seed, step) by the stage, so restoring the module, optimizer and
EMA state is all a resume needs to continue the uninterrupted loss curve exactly.

Checkpoints: `<run>/checkpoints/step_XXXXXXX.pt` (torch.save of model, EMA, optimizer, history,
identity), written to a temp file in the same folder and renamed, so a killed run never leaves a
half-written checkpoint; `step_XXXXXXX.pt.digest` records the file's xxh3-128 (fast: a
1.9B model's state with optimizer is ~30 GB, hashed at ~10 GB/s). The newest regular
checkpoint and every named-fraction checkpoint are kept; older regular ones are deleted. A
resume loads with `torch.load(weights_only=True)` (tensors and plain containers only) and skips,
with a warning, a state whose digest differs or that does not load (disk corruption after the
rename), taking the newest intact one. A non-finite loss stops the run before the next save, so
the newest checkpoint on disk is always a finite one.
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
import time
import warnings
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.distributed as dist
import xxhash
from torch import nn

from readouts.optim import warmup_cosine
from walt.checkpoint import write_text_atomic
from walt.training import EMA
from walt_probe.errors import CheckpointError, ConfigurationError, IntegrityError, TrainingDivergedError

_CKPT = re.compile(r"^step_(\d{7})\.pt$")


class NonFiniteLossError(TrainingDivergedError):
    """Training produced a NaN/inf loss; the newest checkpoint on disk predates it."""


class ResumeMismatchError(ConfigurationError):
    """--resume found a checkpoint of a different run (size, variant, stage, batch, ...)."""


# ----------------------------------------------------------------------------- processes

@dataclasses.dataclass
class Dist:
    """This process's place in a (possibly single-process) DDP job started by torchrun."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def init_dist(device: torch.device) -> Dist:
    """Reads torchrun's RANK / WORLD_SIZE / LOCAL_RANK; starts NCCL on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(0, 1, device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, device)


def close_dist(d: Dist) -> None:
    if d.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


# ----------------------------------------------------------------------------- checkpoints

def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:07d}.pt"


def checkpoints_newest_first(run_dir: Path) -> list[Path]:
    """The step_*.pt checkpoints under <run_dir>/checkpoints, highest step first."""
    folder = Path(run_dir) / "checkpoints"
    found = sorted((int(m.group(1)), p) for p in folder.glob("step_*.pt") if (m := _CKPT.match(p.name)))
    return [p for _, p in reversed(found)]


def latest_checkpoint(run_dir: Path) -> Optional[Path]:
    """The checkpoint of the highest step under <run_dir>/checkpoints, or None."""
    found = checkpoints_newest_first(run_dir)
    return found[0] if found else None


def digest_path(path: Path) -> Path:
    """step_0000010.pt -> step_0000010.pt.digest ('xxh3_128:<hex>' of the state file)."""
    return Path(path).with_name(Path(path).name + ".digest")


def _digest(path: Path) -> str:
    h = xxhash.xxh3_128()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(8 << 20), b""):
            h.update(chunk)
    return f"xxh3_128:{h.hexdigest()}"


def _to_host(obj):
    """A copy of a (nested) state dict with every tensor on the CPU: what a background writer
    may serialise while the training step mutates the originals on the GPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_host(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_host(v) for v in obj)
    return obj


def save_atomic(obj, path: Path) -> None:
    """torch.save through a temp file in the same folder + os.replace; then its digest file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        digest = _digest(tmp)
        digest_path(path).unlink(missing_ok=True)  # a stale digest must never vouch for new bytes
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    write_text_atomic(digest_path(path), digest + "\n")


def load_state(path: Path, map_location) -> dict:
    """A training state saved by save_atomic; IntegrityError when its digest differs from the
    recorded one or it does not load (truncated, garbled). weights_only=True: tensors, numbers,
    strings and containers only, nothing executable."""
    path = Path(path)
    side = digest_path(path)
    if side.is_file():
        want = side.read_text().strip()
        got = _digest(path)
        if got != want:
            raise IntegrityError(path, STATE_RECOVERY, f"its digest is {got[:21]}... but "
                                                       f"{side.name} records {want[:21]}...")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - zip, unpickling and EOF errors all mean unreadable
        raise IntegrityError(path, STATE_RECOVERY, f"it does not load ({type(err).__name__}: "
                                                   f"{str(err).splitlines()[0] if str(err) else ''})") from None
    if not isinstance(state, dict) or not {"model", "optimizer", "step"} <= set(state):
        raise IntegrityError(path, STATE_RECOVERY, "it is not a training state (no model / optimizer / step)")
    return state


STATE_RECOVERY = ("delete it to resume from the previous state, or start the run again without "
                  "--resume in a new Run.output_dir")


def named_fraction_steps(steps: int, fractions) -> dict[int, str]:
    """{step: 'p005'} for each fraction of the run (0.05 -> step round(0.05 * steps), tag p005)."""
    out = {}
    for f in fractions:
        if not 0 < f <= 1:
            raise ValueError(f"checkpoint fractions must be in (0, 1], got {f}")
        out[max(1, round(f * steps))] = f"p{round(f * 100):03d}"
    return out


# ----------------------------------------------------------------------------- the loop

@dataclasses.dataclass
class LoopConfig:
    """Optimisation and bookkeeping settings of one stage (bound from gin by the runner)."""

    steps: int
    lr: float = 5e-4
    warmup: int = 500
    final_lr_ratio: float = 0.01
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    checkpoint_every: int = 1000
    fractions: tuple[float, ...] = (0.05, 0.1, 0.2, 0.26, 0.5, 1.0)
    log_every: int = 50
    precision: str = "auto"      # 'auto' (bf16 on CUDA, fp32 on CPU) | 'bf16' | 'fp32'
    compile: bool = False
    # Write checkpoints from a background thread (the state is first copied to host memory, so
    # the next steps may run while the file is written); the previous write is awaited before
    # the next one starts and before train() returns, so the pruning and resume rules hold.
    async_checkpoints: bool = False


class Trainer:
    """Runs `loss_fn` for `cfg.steps` updates of `model`, with checkpoints and exact resume.

    model: the module to train (already on dist.device).
    loss_fn(step, model) -> (scalar loss, {name: scalar tensor}); `model` is the DDP/compiled
      wrapper to call for the gradient pass.
    identity: plain dict describing the run (stage, size, variant, batch size, ...); a resume
      from a checkpoint whose identity differs fails with ResumeMismatchError.
    on_save(step, tag, ema_model): called on rank 0 after each checkpoint (tag: 'p050' for a
      named fraction, else None), with a module holding the EMA weights (samples, exports).
    """

    def __init__(self, model: nn.Module, cfg: LoopConfig, run_dir: Path, d: Dist, identity: dict,
                 loss_fn: Callable, on_save: Optional[Callable] = None, log: Callable = print):
        self.cfg, self.run_dir, self.d, self.identity = cfg, Path(run_dir), d, identity
        self.model, self.loss_fn, self.on_save, self.log = model, loss_fn, on_save, log
        self.bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and d.device.type == "cuda")
        decay, no_decay = [], []
        for p in model.parameters():
            if p.requires_grad:
                # Biases, norms and embeddings' 1-d parameters are not decayed (standard AdamW use).
                (decay if p.ndim >= 2 else no_decay).append(p)
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr, betas=cfg.betas, fused=d.device.type == "cuda")
        self.ema = EMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        runner = torch.compile(model) if cfg.compile else model
        self.forward_model = runner
        if d.world_size > 1:
            ids = [d.device.index] if d.device.type == "cuda" else None
            runner = nn.parallel.DistributedDataParallel(runner, device_ids=ids)
        self.grad_model = runner
        self.step = 0
        self.history: dict[str, list] = {"step": [], "loss": [], "lr": [], "grad_norm": []}
        self.timing: list[dict] = []
        self.fraction_steps = named_fraction_steps(cfg.steps, cfg.fractions)
        self._writer: Optional[threading.Thread] = None
        self._writer_error: list[BaseException] = []

    # --- state
    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "ema": self.ema.state_dict() if self.ema else None, "step": self.step,
                "history": self.history, "timing": self.timing, "identity": self.identity}

    def resume_latest(self) -> Path:
        """Resumes from the newest intact checkpoint of this run; corrupt ones are skipped with a
        warning (the log says which and why). CheckpointError when none is intact."""
        candidates = checkpoints_newest_first(self.run_dir)
        problems = []
        for path in candidates:
            try:
                state = load_state(path, self.d.device)
            except IntegrityError as err:
                problems.append(str(err))
                self.log(f"WARNING: skipping corrupt checkpoint: {err}")
                warnings.warn(f"--resume skips {path}: {err}", stacklevel=2)
                continue
            self.resume(path, state)
            return path
        raise CheckpointError(f"--resume: no intact checkpoint under {self.run_dir / 'checkpoints'} "
                              f"({len(candidates)} tried: {'; '.join(problems) or 'none found'}); start "
                              f"again without --resume in a new Run.output_dir")

    def resume(self, path: Path, state: dict | None = None) -> None:
        """Loads a checkpoint of this same run (`state`: already loaded), or fails naming what differs."""
        state = load_state(path, self.d.device) if state is None else state
        theirs = state.get("identity", {})
        diffs = [k for k in sorted(set(theirs) | set(self.identity)) if theirs.get(k) != self.identity.get(k)]
        if diffs:
            detail = "; ".join(f"{k}: checkpoint {theirs.get(k)!r} vs this run {self.identity.get(k)!r}"
                               for k in diffs)
            raise ResumeMismatchError(f"cannot resume from {path}: it belongs to a different run ({detail}). "
                                      f"Resume with the same gin files, or use a new Run.output_dir.")
        own = self.model.state_dict()
        for k, v in state["model"].items():
            if k in own and own[k].shape != v.shape:
                raise ResumeMismatchError(f"cannot resume from {path}: tensor '{k}' has shape "
                                          f"{tuple(v.shape)} there but {tuple(own[k].shape)} here")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        if self.ema and state["ema"]:
            self.ema.load_state_dict(state["ema"])
        self.step, self.history, self.timing = state["step"], state["history"], state["timing"]
        self.log(f"resumed from {path} at step {self.step}")

    def ema_module(self) -> nn.Module:
        """A copy of the model holding the EMA weights (the model itself when EMA is off)."""
        import copy
        if self.ema is None:
            return self.model
        m = copy.deepcopy(self.model)
        self.ema.copy_to(m)
        return m.eval()

    def wait_for_writes(self) -> None:
        """Blocks until the background checkpoint write (if any) is on disk; re-raises its error."""
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        if self._writer_error:
            err = self._writer_error.pop()
            raise RuntimeError(f"writing a checkpoint under {self.run_dir / 'checkpoints'} failed: {err}") from err

    def _write_and_prune(self, state: dict, path: Path) -> None:
        try:
            save_atomic(state, path)
            keep = {checkpoint_path(self.run_dir, s) for s in self.fraction_steps} | {path}
            for old in (self.run_dir / "checkpoints").glob("step_*.pt"):
                if old not in keep:
                    old.unlink(missing_ok=True)
                    digest_path(old).unlink(missing_ok=True)
        except BaseException as err:  # surfaced by wait_for_writes in the training thread
            self._writer_error.append(err)

    def save(self, tag: Optional[str]) -> Path:
        path = checkpoint_path(self.run_dir, self.step)
        if self.d.is_main:
            self.wait_for_writes()
            if self.cfg.async_checkpoints:
                state = _to_host(self.state_dict())
                self._writer = threading.Thread(target=self._write_and_prune, args=(state, path),
                                                name="checkpoint-writer", daemon=False)
                self._writer.start()
            else:
                self._write_and_prune(self.state_dict(), path)
                self.wait_for_writes()
            if self.on_save is not None:
                self.on_save(self.step, tag, self.ema_module())
        self.d.barrier()
        return path

    # --- running
    def _flush(self, losses: list, lrs: list, norms: list, first_step: int) -> None:
        """Moves the buffered per-step values to the host (one sync), averaged over ranks."""
        if not losses:
            return
        stacked = torch.stack([torch.stack(losses).float(), torch.stack(norms).float()])
        if self.d.world_size > 1:
            dist.all_reduce(stacked)
            stacked /= self.d.world_size
        loss_list, norm_list = stacked.tolist()
        bad = [first_step + i for i, v in enumerate(loss_list) if not torch.isfinite(torch.tensor(v))]
        if bad:
            last = latest_checkpoint(self.run_dir)
            raise NonFiniteLossError(
                f"loss became non-finite at step {bad[0] + 1} (value {loss_list[bad[0] - first_step]}); "
                f"training stopped. Last good checkpoint: {last or 'none yet'}. Lower Pretrain.lr, raise "
                f"Pretrain.warmup or set Pretrain.grad_clip, then rerun with --resume.")
        self.history["step"] += list(range(first_step + 1, first_step + 1 + len(loss_list)))
        self.history["loss"] += loss_list
        self.history["grad_norm"] += norm_list
        self.history["lr"] += lrs
        losses.clear(), lrs.clear(), norms.clear()

    def train(self, stop_after: Optional[int] = None) -> dict:
        """Runs to cfg.steps (or `stop_after` more updates); returns throughput numbers."""
        cfg = self.cfg
        target = cfg.steps if stop_after is None else min(cfg.steps, self.step + stop_after)
        losses, lrs, norms = [], [], []
        buf_start, t_start, s_start = self.step, time.perf_counter(), self.step
        self.model.train()
        while self.step < target:
            factor = warmup_cosine(self.step, steps=cfg.steps, warmup=min(cfg.warmup, cfg.steps // 5),
                                   peak=1.0, final=cfg.final_lr_ratio, count_from=1)
            for group in self.opt.param_groups:
                group["lr"] = cfg.lr * factor
            with torch.autocast(self.d.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                loss, _ = self.loss_fn(self.step, self.grad_model)
            loss.backward()
            norm = nn.utils.clip_grad_norm_(self.model.parameters(),
                                            cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            if self.ema:
                self.ema.update(self.model)
            losses.append(loss.detach()), norms.append(norm.detach()), lrs.append(cfg.lr * factor)
            self.step += 1
            tag = self.fraction_steps.get(self.step)
            regular = cfg.checkpoint_every > 0 and self.step % cfg.checkpoint_every == 0
            end = self.step == target
            if self.step % cfg.log_every == 0 or tag or regular or end:
                self._flush(losses, lrs, norms, buf_start)
                buf_start = self.step
                now = time.perf_counter()
                self.timing.append({"step": self.step, "steps": self.step - s_start, "seconds": now - t_start})
                t_start, s_start = now, self.step
                if self.d.is_main:
                    self.log(f"step {self.step}/{cfg.steps}  loss {self.history['loss'][-1]:.5f}  "
                             f"lr {self.history['lr'][-1]:.2e}  "
                             f"{self.timing[-1]['steps'] / max(1e-9, self.timing[-1]['seconds']):.2f} steps/s")
            if tag or regular or end:
                # An invocation that stops early (stop_after) still leaves a checkpoint.
                self.save(tag)
                t_start = time.perf_counter()  # checkpoint time is not training time
        self.wait_for_writes()
        return self.throughput()

    def throughput(self) -> dict:
        """Steps/s over the timed intervals, skipping the first (warm-up, compilation)."""
        rows = self.timing[1:] if len(self.timing) > 1 else self.timing
        steps = sum(r["steps"] for r in rows)
        secs = sum(r["seconds"] for r in rows)
        return {"steps": steps, "seconds": secs, "steps_per_s": steps / secs if secs else float("nan")}
