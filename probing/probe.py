"""The probe engine: one probe run from plain Python, shared by `walt-probe probe`, every Ray
Tune trial and any script (no gin here; runners/trial.py builds `Probe` from gin).

  run(probe, output_dir, seed, device) -> ProbeResult (probing/result.py)

places the frozen backbone, trains the task's readout on one block's activations at one
timestep t with the probe's optimiser (default: the paper's AdamW + warm-up cosine), evaluates
with the task's accumulator and writes, into `output_dir`:

  metrics.json            the ProbeResult: status, headline metric + value + direction, every
                          metric, the backbone's identity, block, noise level, timings
  tb/                     TensorBoard: train loss, lr, final metrics
  head.safetensors, head.json, predictions.npz
                          the kept readout and its predictions on the reported split
                          (probing/kept.py; Probe.keep_head)

  evaluate_kept(probe, head_dir, output_dir, split, device) -> ProbeResult

re-evaluates a kept head on any split (or another dataset of the same task) without training.

  fit_readout(probe, head, source, device, tb) -> (status, error, last loss)
  evaluate(probe, head, source, device) -> {metric: value}

Features come from the feature cache (`Probe.use_cache`, probing/cache.py) or from the
backbone on the fly; either way the backbone is frozen and runs under no_grad with noise fixed
per example, so both paths see the same activations. A non-finite loss stops the trial with
status 'diverged' and no metric value.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import DataLoader

from probing import cache as fc
from probing import extract, kept
from probing.progress import Progress
from probing.result import STATUS_DIVERGED, STATUS_FAILED, STATUS_OK, ProbeResult, code_fingerprint, failed
from readouts.optim import paper_optimizer
from walt.checkpoint import write_text_atomic
from walt.training import seed_everything  # noqa: F401  (the one seeding helper)

ConfigError = extract.ConfigError


@dataclasses.dataclass
class Probe:
    """One probe run's settings (gin: `Probe.<field>`).

    backbone: a frozen Backbone (`@Backbone()`), see backbones/base.py (WALT: backbones/walt.py).
    task: a Task (`%TASK`, set by gin/tasks/**.gin), see tasks/task.py.
    block: block to read (int; 0 = embedding output, 1..L) or a float fraction of depth (0.66).
    timestep: diffusion timestep t in [0, 1000) the latents are noised to.
    steps, batch_size: readout training steps and batch size; eval_batch_size for eval/extract.
      The default 10,000 steps is Table 7's shortest recipe (Places365, iNat2018).
    optimizer: (parameters, steps) -> (optimizer, lr scheduler); None = the paper's
      (readouts.optim.paper_optimizer: AdamW, 1,000 warm-up steps, cosine decay; it refuses a
      run of 1,000 steps or fewer rather than shortening the warm-up). From gin it is
      `PaperOptimizer`, configured there: PaperOptimizer.lr / .warmup / .final_lr / ...
    use_cache: read activations from the feature cache in cache_dir (extracting missing entries)
      instead of running the backbone for every batch.
    cache_views: K augmented views cached per example of a split whose reader augments (random
      crops, flips, temporal windows: the real readers' train splits); each training step's
      examples come with one of their K views. Part of the cache key. None: such a split is
      refused by the cache with an error saying so (splits that do not augment ignore it).
    cache_blocks: extra blocks to store with `block` (a grid's blocks: one pass serves them all).
    cache_dtype: 'float16' | 'bfloat16' | 'float32' storage of cached activations.
    noise_seed: offset of the per-example noise seeds (seed = index + 1_000_003 * noise_seed).
    num_workers: DataLoader workers; log_every: steps between logged losses.
    feature_residence: where cached activations are batched from: 'auto' (the backbone's device
      when the block fits in half its free memory, else host memory, else shards read from disk
      per batch), 'device', 'host' or 'stream' (the shard reader). Same batches either way.
    noise_draws: K >= 1 noise draws whose features are averaged before the readout (each
      seeded per example and draw, probing/extract.py block_features); K = 1 is a single draw.
      Costs K backbone passes per batch; part of the cache key.
    eval_clips: N >= 1 clips per video at evaluation (video classification): the task's
      datasets offer N evenly spaced temporal windows per video (tasks/task.py ClipView), the
      head's softmax probabilities are averaged over them per video and scored once (the
      paper's multi-clip evaluation). Training still sees one clip per example.
    keep_head: save the trained head and its predictions in the run folder (probing/kept.py);
      a huge sweep may turn it off (gin: Probe.keep_head = False).
    compile_head: None (eager) or a torch.compile mode for the readout head: 'default',
      'reduce-overhead' (CUDA graphs: the tracking heads are chains of small kernels over 17
      frames, 8.6x faster per step at the mini-study's width on an H200,
      benchmarks/results/tracking_readout_speed.md) or 'max-autotune'. Same head, same init;
      results agree up to kernel numerics, so it is not part of a run's identity.
    """

    backbone: Any = None
    task: Any = None
    block: Any = 0.66
    timestep: int = 200
    steps: int = 10_000
    batch_size: int = 32
    eval_batch_size: int = 64
    use_cache: bool = False
    cache_dir: str = "cache/features"
    cache_blocks: Sequence = ()
    cache_dtype: str = "float16"
    cache_views: int | None = None
    noise_seed: int = 0
    noise_draws: int = 1
    eval_clips: int = 1
    keep_head: bool = True
    num_workers: int = 0
    log_every: int = 50
    feature_residence: str = "auto"
    compile_head: str | None = None
    eval_splits: Sequence[str] = ("val", "test")
    optimizer: Any = None

    def validate(self) -> "Probe":
        """Raises ConfigError naming the first setting that cannot work and the fix; returns self."""
        check(self)
        return self


# Probe settings that change only the readout, not the cached activations (see ENTRY_FIELDS).
READOUT_ONLY_FIELDS = tuple(f.name for f in dataclasses.fields(Probe) if f.name not in extract.ENTRY_FIELDS)


def check(probe: Probe) -> Probe:
    """Clear errors for what is missing or out of range (see Probe.validate)."""
    missing = [f for f in ("backbone", "task") if getattr(probe, f) is None]
    if missing:
        hint = {"backbone": "Probe.backbone = @Backbone() (e.g. include 'backbones/small.gin')",
                "task": "Probe.task = %TASK and include a task file such as "
                        "'tasks/synthetic/<analog>.gin'"}
        raise ConfigError("the probe has no " + " and no ".join(missing) + ": set "
                         + "; ".join(hint[m] for m in missing))
    if not _is_task(probe.task):
        raise ConfigError(f"Probe.task = {probe.task!r} is not a Task (tasks/task.py): bind a task "
                          f"builder, e.g. TASK = @SyntheticMotionActions() (note the @ and the "
                          f"parentheses), or include a file from gin/tasks/")
    if not callable(getattr(probe.backbone, "features", None)):
        raise ConfigError(f"Probe.backbone = {probe.backbone!r} is not a Backbone (backbones/base.py): "
                          f"bind Probe.backbone = @Backbone() (include 'backbones/small.gin')")
    t = probe.timestep
    if isinstance(t, bool) or not isinstance(t, numbers.Real) or t != int(t):
        raise ConfigError(f"Probe.timestep = {t!r} is not an integer; t is the diffusion step "
                          f"index in [0, 1000) (e.g. --gin.TIMESTEP=200)")
    if not 0 <= int(t) < 1000:
        raise ConfigError(f"Probe.timestep = {t} is outside [0, 1000)")
    probe.timestep = int(t)
    if probe.steps < 1 or probe.batch_size < 1:
        raise ConfigError("Probe.steps and Probe.batch_size must be >= 1")
    if probe.cache_dtype not in fc.DTYPES:
        raise ConfigError(f"Probe.cache_dtype = {probe.cache_dtype!r}; use one of {sorted(fc.DTYPES)}")
    if isinstance(probe.noise_draws, bool) or not isinstance(probe.noise_draws, int) or probe.noise_draws < 1:
        raise ConfigError(f"Probe.noise_draws = {probe.noise_draws!r}; use an int >= 1 (1 = one "
                          f"noise draw, K > 1 averages the features over K draws)")
    if isinstance(probe.eval_clips, bool) or not isinstance(probe.eval_clips, int) or probe.eval_clips < 1:
        raise ConfigError(f"Probe.eval_clips = {probe.eval_clips!r}; use an int >= 1 (clips "
                          f"averaged per video at evaluation)")
    if probe.feature_residence not in RESIDENCES:
        raise ConfigError(f"Probe.feature_residence = {probe.feature_residence!r}; use one of "
                          f"{RESIDENCES}")
    if probe.cache_views is not None and (isinstance(probe.cache_views, bool)
                                          or int(probe.cache_views) < 1):
        raise ConfigError(f"Probe.cache_views = {probe.cache_views!r}; use an int K >= 1 (views "
                          f"cached per example of an augmenting split) or None")
    if not probe.eval_splits or "train" in probe.eval_splits or \
            len(set(probe.eval_splits)) != len(probe.eval_splits):
        raise ConfigError(f"Probe.eval_splits = {tuple(probe.eval_splits)!r}; give distinct "
                          f"held-out splits, the selection split first, e.g. ('val', 'test')")
    if probe.compile_head not in COMPILE_MODES:
        raise ConfigError(f"Probe.compile_head = {probe.compile_head!r}; use None (eager) or one of "
                          f"{COMPILE_MODES[1:]}")
    return probe


def _is_task(task) -> bool:
    return all(hasattr(task, a) for a in ("name", "split", "make_head", "loss", "metric"))


RESIDENCES = ("auto", "device", "host", "stream")
COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune")


def compiled(head: torch.nn.Module, mode: str | None) -> torch.nn.Module:
    """`head` itself (mode None) or torch.compile(head, mode=mode): the same parameters, so the
    optimiser and the parameter count see no difference."""
    return head if mode is None else torch.compile(head, mode=mode)


def backbone_info(backbone) -> dict:
    """name, family, fingerprint, variant, size and depth of a backbone, for result tables: what
    the backbone says about itself (the Backbone contract, backbones/base.py), nothing else."""
    missing = [a for a in ("name", "family", "variant", "size", "num_blocks", "fingerprint")
               if getattr(backbone, a, None) in (None, "")]
    if missing:
        raise ConfigError(f"backbone {type(backbone).__name__} does not report {', '.join(missing)}; "
                          f"every Backbone must (see backbones/base.py)")
    return {"backbone": str(backbone.name), "family": str(backbone.family),
            "fingerprint": str(backbone.fingerprint), "variant": str(backbone.variant),
            "size": str(backbone.size), "num_blocks": int(backbone.num_blocks)}


def place_backbone(backbone, device: torch.device) -> None:
    """Moves the backbone to `device`, frozen and in eval mode (it is never trained here)."""
    if callable(getattr(backbone, "to", None)):
        backbone.to(device)
    modules = [backbone] if isinstance(backbone, torch.nn.Module) else [
        getattr(backbone, a, None) for a in ("tokenizer", "walt")]
    for module in modules:
        if isinstance(module, torch.nn.Module):
            module.to(device).eval().requires_grad_(False)


def _to(batch: dict, device) -> dict:
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


class FeatureSource:
    """Batches of (activations (b, t, h, w, D) float32, batch items) of one block at one t.

    From the cache, a split's block is loaded once, on first use, where `Probe.feature_residence`
    says (see Probe): on a CUDA device a step then reads no file and copies no features from the
    host. `residence` records where each split's features were served from and why.
    """

    def __init__(self, probe: Probe, block: int, generator: torch.Generator,
                 splits: Sequence[str] | None = None):
        """splits: the splits to serve; None = train and every held-out split of probe.eval_splits
        the task has (a kept head's re-evaluation asks for its one split)."""
        self.probe, self.block, self.gen = probe, block, generator
        self.backbone, self.task = probe.backbone, probe.task
        self.device = extract.device_of(self.backbone)
        self.entries = {}
        self.resident: dict[str, object] = {}
        self.residence: dict[str, str] = {}
        self.backbone_batches = 0
        self.created: list = []  # entries this source extracted (their manifests hold the time)
        # The held-out splits this task has; the first requested one (selection) must exist.
        self.eval_splits = [s for s in probe.eval_splits if s in self.task.datasets]
        if probe.eval_splits[0] not in self.eval_splits:
            self.task.split(probe.eval_splits[0])  # the KeyError names the splits that exist
        if splits is None:
            splits = ("train", *self.eval_splits)
        if probe.use_cache:
            blocks = sorted({block, *extract.valid_blocks(probe.cache_blocks, self.backbone.num_blocks)})
            for split in splits:
                entry, created = extract.ensure_probe_entry(probe, split, blocks)
                self.entries[split] = entry
                if created:
                    self.created.append(entry)
                    self.backbone_batches += entry.manifest.get("backbone_batches", 0)

    @property
    def kind(self) -> str:
        return "cache" if self.entries else "on-the-fly"

    def _resident(self, split: str):
        """The split's ResidentBlock, or None to stream shards (decided once per split)."""
        if split in self.residence:
            return self.resident.get(split)
        entry, want = self.entries[split], self.probe.feature_residence
        nbytes = entry.block_bytes(self.block)
        places = {"auto": [self.device, torch.device("cpu")], "device": [self.device],
                  "host": [torch.device("cpu")], "stream": []}[want]
        why = []
        for place in dict.fromkeys(places):
            ok, reason = fc.ResidentBlock.fits(nbytes, place)
            if ok or want != "auto":
                self.resident[split] = fc.ResidentBlock(entry, self.block, place)
                self.residence[split] = f"{place} ({reason})"
                return self.resident[split]
            why.append(reason)
        self.residence[split] = "stream (shards read per batch" + (": " + "; ".join(why) if why else "") + ")"
        if why:
            print(f"probe: block {self.block} of {split} does not fit in memory ({'; '.join(why)}); "
                  f"reading cache shards per batch", flush=True)
        return None

    def epoch(self, split: str, batch_size: int, train: bool):
        if split in self.entries:
            entry = self.entries[split]
            drop_last = train and entry.num_examples >= batch_size
            resident = self._resident(split)
            if resident is not None:
                yield from resident.iter_batches(batch_size, shuffle=train, generator=self.gen,
                                                 drop_last=drop_last)
            else:
                yield from entry.iter_batches(self.block, batch_size, shuffle=train,
                                              generator=self.gen, drop_last=drop_last)
            return
        dataset = self.task.split(split)
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=train, generator=self.gen,
                            drop_last=train and len(dataset) >= batch_size,
                            num_workers=self.probe.num_workers)
        for batch in loader:
            seeds = extract.noise_seeds(batch, self.probe.noise_seed).to(self.device)
            with torch.no_grad():
                feats = extract.block_features(self.backbone, batch["video"].to(self.device),
                                               self.probe.timestep, [self.block], seeds,
                                               self.probe.noise_draws)
            self.backbone_batches += self.probe.noise_draws
            extract.add_feature_spans(batch, self.backbone, feats)
            yield feats[self.block].float(), {k: v for k, v in batch.items() if k != "video"}

    def train_batches(self, batch_size: int):
        while True:
            empty = True
            for item in self.epoch("train", batch_size, train=True):
                empty = False
                yield item
            if empty:
                raise ValueError(f"task '{self.task.name}' has an empty train split")


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def fit_readout(probe: Probe, head, source: FeatureSource, device, tb=None,
                timings: list | None = None) -> tuple[str, str | None, float]:
    """Trains `head` for probe.steps on source's train batches; returns (status, error message or
    None, last finite loss). tb: a SummaryWriter for loss and lr, or None.

    On a GPU the loss is read back to the host only every `log_every` steps (one sync for the
    batch of steps since the last read), so the host queues steps ahead of the device; a
    non-finite loss is still reported at the step it first appeared. timings: if a list,
    (seconds waiting for the batch, seconds of the step) is appended per step, with the device
    synchronised around both (a benchmark's view; it serialises host and device).
    """
    task = probe.task
    opt, sched = (probe.optimizer or paper_optimizer)(head.parameters(), probe.steps)
    head.train()
    bar = Progress(probe.steps, f"probe {task.name}", every_s=30.0)
    last, batches = float("nan"), source.train_batches(probe.batch_size)
    read_every = 1 if torch.device(device).type == "cpu" else max(1, probe.log_every)
    pending: list[tuple[int, torch.Tensor, float]] = []  # (step, loss on device, lr) not yet read
    for step in range(1, probe.steps + 1):
        if timings is not None:
            _sync(device)
            t0 = time.perf_counter()
        feats, batch = next(batches)
        batch = _to(batch, device)
        feats = feats.to(device, non_blocking=True)
        if timings is not None:
            _sync(device)
            t1 = time.perf_counter()
        out = head(*task.head_inputs(feats, batch))
        loss = task.loss(out, batch)
        if read_every == 1 and not math.isfinite(float(loss.detach())):
            pending.append((step, loss.detach(), 0.0))  # reported below, before any update
        else:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            pending.append((step, loss.detach(), opt.param_groups[0]["lr"]))
        if timings is not None:
            _sync(device)
            timings.append((t1 - t0, time.perf_counter() - t1))
        if step % read_every and step != probe.steps:
            bar.update()
            continue
        values = torch.stack([v.reshape(()) for _, v, _ in pending]).float().cpu().tolist()  # one sync
        for (at, _, lr), value in zip(pending, values):
            if not math.isfinite(value):
                bar.close()
                return (STATUS_DIVERGED, f"loss became {value} at step {at} of {probe.steps}; no "
                        f"metric is reported (lower PaperOptimizer.lr, or check block/timestep "
                        f"features)", last)
            last = value
            if tb is not None and (at % probe.log_every == 0 or at == probe.steps):
                tb.add_scalar("train/loss", value, at)
                tb.add_scalar("train/lr", lr, at)
        pending = []
        bar.update(loss=last)
    bar.close()
    return STATUS_OK, None, last


def evaluate(probe: Probe, head, source: FeatureSource, device, split: str = "val",
             keep: kept.Predictions | None = None) -> dict[str, float]:
    """The task's metrics of `head` on `split`: {name: value} from the task's accumulator.
    keep: a kept.Predictions that also receives every batch's predictions, or None.
    With probe.eval_clips > 1, `evaluate_clips` scores the average over the clips of each video."""
    if probe.eval_clips > 1:
        return evaluate_clips(probe, head, source, device, split, keep)
    acc = probe.task.new_accumulator()
    head.eval()
    with torch.no_grad():
        for feats, batch in source.epoch(split, probe.eval_batch_size, train=False):
            batch = _to(batch, device)
            preds = head(*probe.task.head_inputs(feats.to(device), batch))
            acc.update(preds, batch)
            if keep is not None:
                keep.update(preds, batch)
    return {k: float(v) for k, v in acc.result().items()}


def evaluate_clips(probe: Probe, head, source: FeatureSource, device, split: str = "val",
                   keep: kept.Predictions | None = None) -> dict[str, float]:
    """Multi-clip evaluation: for each of N = probe.eval_clips views (tasks/task.py ClipView),
    features of every video's view-th window (cached per view: each view is its own dataset),
    the head's logits (b, k); per video the softmax probabilities are averaged,
        p(video) = (1 / N) sum_v softmax(logits_v),
    and the task's accumulator scores log p(video) (same argmax as p) once per video."""
    from tasks.task import ClipView

    task = probe.task
    probs: dict[int, torch.Tensor] = {}
    items: dict[int, dict] = {}
    head.eval()
    for view in range(probe.eval_clips):
        datasets = {**task.datasets, split: ClipView(task.split(split), view, probe.eval_clips)}
        view_probe = dataclasses.replace(probe, task=dataclasses.replace(task, datasets=datasets),
                                         eval_clips=1)
        view_source = FeatureSource(view_probe, source.block, source.gen, splits=(split,))
        with torch.no_grad():
            for feats, batch in view_source.epoch(split, probe.eval_batch_size, train=False):
                batch = _to(batch, device)
                logits = head(*task.head_inputs(feats.to(device), batch))
                if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
                    raise ConfigError(f"Probe.eval_clips = {probe.eval_clips} averages class "
                                      f"predictions; task '{task.name}' is not a classification "
                                      f"task (set Probe.eval_clips = 1)")
                p = torch.softmax(logits.float(), dim=-1)
                for row, i in enumerate(torch.as_tensor(batch["index"]).tolist()):
                    probs[i] = probs.get(i, 0) + p[row] / probe.eval_clips
                    items.setdefault(i, {k: v[row] for k, v in batch.items()
                                         if isinstance(v, torch.Tensor) and v.ndim and k != "video"})
        source.backbone_batches += view_source.backbone_batches
        source.created += view_source.created
    acc = task.new_accumulator()
    order = sorted(probs)
    for i in range(0, len(order), probe.eval_batch_size):
        chunk = order[i:i + probe.eval_batch_size]
        logits = torch.log(torch.stack([probs[j] for j in chunk]).clamp_min(1e-30))
        batch = {k: torch.stack([items[j][k] for j in chunk]) for k in items[chunk[0]]}
        acc.update(logits, batch)
        if keep is not None:
            keep.update(logits, batch)
    return {k: float(v) for k, v in acc.result().items()}


def run(probe: Probe, output_dir, seed: int = 0, device="cpu",
        on_finish: Callable[[Path, Any], None] | None = None,
        bindings: Sequence[str] = ()) -> ProbeResult:
    """One probe run (see the module docstring). Returns the ProbeResult written to metrics.json.

    probe: the settings (validated here). output_dir: the run's folder. seed: seeds python,
    numpy and torch and the batch order. device: a torch device or its name.
    on_finish(output_dir, tb): called before metrics.json is written (the CLI saves its gin
    config there and adds it to TensorBoard). bindings: recorded in the result (a sweep trial's own).
    On bad configuration or data it writes a 'failed' result (with what it had learnt) and
    re-raises, the result attached as `err.probe_result`; a diverged loss is a result, returned
    with status 'diverged' and value None.
    """
    t0 = time.time()
    probe.validate()
    out = Path(output_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    known = {"block_spec": probe.block, "t": int(probe.timestep), "seed": int(seed),
             "noise_seed": int(probe.noise_seed), "steps": probe.steps}
    try:
        return _run(probe, out, seed, device, on_finish, bindings, known, t0)
    except BaseException as err:
        # What the run had learnt when it failed (task, backbone, block) goes into the result,
        # so a report never has to guess it; the exception carries the written result.
        result = failed(err, out, traceback="".join(traceback.format_exception(err))[-4000:],
                        bindings=bindings, **known)
        result.write(out)
        err.probe_result = result
        raise


def _run(probe: Probe, out: Path, seed: int, device, on_finish, bindings, known: dict,
         t0: float) -> ProbeResult:
    from torch.utils.tensorboard import SummaryWriter

    gen = seed_everything(seed)
    backbone, task = probe.backbone, probe.task
    known.update(task=task.name, metric=task.metric, higher_is_better=bool(task.higher_is_better))
    device = torch.device(device)
    place_backbone(backbone, device)
    info = backbone_info(backbone)
    known.update(info)
    block = extract.resolve_block(probe.block, info["num_blocks"])
    known.update(block=block, depth=block / max(info["num_blocks"], 1))

    # The head first: filling the cache draws from the global RNG (DataLoader seeds), and the
    # head's init must not depend on whether this trial found its features cached.
    head = task.make_head(int(backbone.feature_dim)).to(device)
    source = FeatureSource(probe, block, gen)
    tb = SummaryWriter(log_dir=str(out / "tb"))
    t_train = time.perf_counter()
    model = compiled(head, probe.compile_head)
    status, error, last_loss = fit_readout(probe, model, source, device, tb)
    # One trained head, every held-out split the task has: the first selects (its predictions
    # are kept with the head), the rest report.
    predictions = kept.Predictions() if probe.keep_head else None
    selection = probe.eval_splits[0]
    per_split = {split: evaluate(probe, model, source, device, split,
                                 keep=predictions if split == selection else None)
                 for split in source.eval_splits} if status == STATUS_OK else {}
    results = per_split.get(selection, {})
    _sync(device)
    readout_s = time.perf_counter() - t_train
    if status == STATUS_OK and task.metric not in results:
        raise KeyError(f"task '{task.name}' declares metric '{task.metric}' but its accumulator "
                       f"returned {sorted(results)}")
    value = results.get(task.metric)
    if value is not None and not math.isfinite(value):
        status, error, value = STATUS_DIVERGED, f"metric {task.metric} evaluated to {value}", None
    level = backbone.noise_level(int(probe.timestep)) if hasattr(backbone, "noise_level") else None
    result = ProbeResult(
        status=status, error=error, task=task.name, metric=task.metric, value=value,
        higher_is_better=bool(task.higher_is_better), metrics=results, **info,
        block=block, block_spec=probe.block, depth=block / max(info["num_blocks"], 1),
        t=int(probe.timestep), noise=level.to_dict() if level is not None else None,
        split=selection, split_metrics=per_split, seed=int(seed), noise_seed=int(probe.noise_seed),
        steps=probe.steps,
        final_loss=last_loss, feature_source=source.kind, backbone_batches=source.backbone_batches,
        compile_head=probe.compile_head, head_params=sum(p.numel() for p in head.parameters()),
        wall_s=round(time.time() - t0, 3),
        extract_s=round(sum(e.manifest.get("seconds", 0.0) for e in source.created), 3),
        readout_s=round(readout_s, 3), code=code_fingerprint(), output_dir=str(out),
        bindings=list(bindings))
    if predictions is not None and status == STATUS_OK:
        keep_readout(out, head, predictions, result, probe)
    if on_finish is not None:
        on_finish(out, tb)
    for split, split_results in per_split.items():
        for k, v in split_results.items():
            tb.add_scalar(f"eval/{k}" if split == selection else f"eval_{split}/{k}", v, probe.steps)
    tb.close()
    result.write(out)
    print(result.one_line(), flush=True)
    return result


def keep_readout(out: Path, head, predictions: kept.Predictions, result: ProbeResult,
                 probe: Probe) -> None:
    """Saves the trained head (its config: what identifies and rebuilds it) and its predictions
    on the reported split into the run folder (probing/kept.py)."""
    kept.save_head(out, head, {
        "task": result.task, "metric": result.metric, "value": result.value, "split": result.split,
        "feature_dim": int(probe.backbone.feature_dim), "block": result.block, "t": result.t,
        "noise_seed": result.noise_seed, "noise_draws": int(probe.noise_draws),
        "backbone": result.backbone, "fingerprint": result.fingerprint, "seed": result.seed,
        "steps": result.steps, "final_loss": result.final_loss})
    predictions.write(out)


def evaluate_kept(probe: Probe, head_dir, output_dir, split: str = "val", device="cpu",
                  bindings: Sequence[str] = ()) -> ProbeResult:
    """Re-evaluates the head kept in `head_dir` on `split` of probe.task, without training.

    probe: the run's settings (its operative config, possibly pointing at another dataset of the
    same task); its block, timestep and noise settings must be those the head was trained on,
    and its backbone the same weights (fingerprint), else ConfigError says which differs.
    Writes metrics.json (split = `split`, steps = the head's training steps) and
    predictions.npz into output_dir (which may be head_dir itself); returns the result.
    """
    t0 = time.time()
    probe.validate()
    out = Path(output_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    backbone, task = probe.backbone, probe.task
    device = torch.device(device)
    place_backbone(backbone, device)
    info = backbone_info(backbone)
    block = extract.resolve_block(probe.block, info["num_blocks"])
    config = kept.read_config(head_dir)
    asked = {"block": block, "t": int(probe.timestep), "noise_seed": int(probe.noise_seed),
             "noise_draws": int(probe.noise_draws), "fingerprint": info["fingerprint"]}
    differ = [f"{k}: head {config.get(k)!r} vs probe {v!r}" for k, v in asked.items()
              if config.get(k) != v]
    if differ:
        raise ConfigError(f"the head in {head_dir} was trained on other features ({'; '.join(differ)}); "
                          f"evaluate it with the run's operative_config.gin")
    head, _ = kept.load_head(head_dir, task, int(backbone.feature_dim))
    head = head.to(device)
    source = FeatureSource(probe, block, seed_everything(int(config.get("seed") or 0)), splits=(split,))
    predictions = kept.Predictions()
    t_eval = time.perf_counter()
    results = evaluate(probe, head, source, device, split=split, keep=predictions)
    _sync(device)
    value = results.get(task.metric)
    status, error = STATUS_OK, None
    if value is None or not math.isfinite(value):
        status, error, value = STATUS_DIVERGED, f"metric {task.metric} evaluated to {value}", None
    level = backbone.noise_level(int(probe.timestep)) if hasattr(backbone, "noise_level") else None
    result = ProbeResult(
        status=status, error=error, task=task.name, metric=task.metric, value=value,
        higher_is_better=bool(task.higher_is_better), metrics=results, **info,
        block=block, block_spec=probe.block, depth=block / max(info["num_blocks"], 1),
        t=int(probe.timestep), noise=level.to_dict() if level is not None else None,
        split=split, seed=config.get("seed"), noise_seed=int(probe.noise_seed),
        steps=config.get("steps"), final_loss=config.get("final_loss"),
        feature_source=source.kind, backbone_batches=source.backbone_batches,
        compile_head=None, head_params=sum(p.numel() for p in head.parameters()),
        wall_s=round(time.time() - t0, 3),
        extract_s=round(sum(e.manifest.get("seconds", 0.0) for e in source.created), 3),
        readout_s=round(time.perf_counter() - t_eval, 3), code=code_fingerprint(),
        output_dir=str(out), bindings=list(bindings))
    predictions.write(out)
    result.write(out)
    print(result.one_line(), flush=True)
    return result
