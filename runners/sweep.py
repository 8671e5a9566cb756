"""`walt-probe sweep`: a Ray Tune grid of probes, each trial the same `run_probe` as `walt-probe probe`.

  walt-probe sweep --gin_file=experiments/sweep_block_x_timestep.gin [--name NAME] [--no-dashboard]

1. The driver reads `Sweep` from gin: the search space (gin binding -> tune spec, search_spaces/),
   resources per trial, where results go, the dashboard.
2. It prepares the feature caches the grid needs as Ray tasks, one per (feature-relevant grid
   point: backbone, task, t, ...) x split, each storing every grid block from one pass, so an
   L x T grid costs T backbone passes per split instead of L x T.
3. A Tuner runs one trial per grid point. A trial receives plain data (absolute gin files,
   search paths, CLI bindings, its own bindings), parses gin in its own process (files, CLI
   bindings, then the trial's bindings), calls run_probe and reports the metrics.
4. Rerunning the same command after a kill restores the experiment (Tuner.restore, errored
   trials rerun); trial results live in <exp>/trials/<key>/ keyed by the trial's bindings, so a
   finished trial is never run twice even if Ray's own state missed its end.
5. A trial that raises is reported as errored with its message; the others finish. A summary and
   (by default) `walt-probe report` output under <exp>/report/ close the run.

The dashboard binds to 127.0.0.1:8265 (Ray 2.60 protects a local cluster with token auth:
`ray get-auth-token` prints the token). With RAY_ADDRESS set the sweep joins that cluster.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from runners import configurables, gin_setup, trial  # noqa: F401  configurables: registers every name in a Ray worker
from probing.probe import READOUT_ONLY_FIELDS
from probing.result import code_fingerprint  # noqa: F401  (sweep.json records it)
from runners.bindings import render_value, to_bindings, trial_key  # noqa: F401
from runners.settings import Sweep

BLOCK_KEY = "Probe.block"
# Bindings that change only the readout, not the captured activations: grid points that differ
# only in these share one feature-cache entry (and one preparation task). The Probe part is
# derived from the cache key's fields (probing/extract.py ENTRY_FIELDS), not kept by hand.
READOUT_ONLY = (*(f"Probe.{name}" for name in READOUT_ONLY_FIELDS), "Run.seed", "Run.output_dir")
READOUT_ONLY_PREFIXES = ("PaperOptimizer.", "LinearReadout.")


# ----------------------------------------------------------------------------- bindings

def merge_spaces(spaces) -> dict:
    """One space from a space or a list of spaces (axes multiply); a key may appear only once."""
    if isinstance(spaces, Mapping):
        return dict(spaces)
    merged: dict = {}
    for space in spaces:
        clash = sorted(set(merged) & set(space))
        if clash:
            raise ValueError(f"search spaces both set {clash}; give each binding in one space only")
        merged.update(space)
    return merged


def expand_grid(space: Mapping[str, Any]) -> list[dict]:
    """Every grid point of `space` (grid_search axes multiply; constants kept; other specs dropped)."""
    axes = []
    for key, spec in space.items():
        if isinstance(spec, Mapping) and "grid_search" in spec:
            axes.append([(key, v) for v in spec["grid_search"]])
        elif not hasattr(spec, "sample"):  # a constant (tune Domains have .sample)
            axes.append([(key, spec)])
    return [dict(point) for point in itertools.product(*axes)]


def _readout_only(key: str, value) -> bool:
    if isinstance(value, Mapping):
        return all(_readout_only(k, v) for k, v in value.items() if k != "__name__")
    name = key.split("/")[-1]
    return name in READOUT_ONLY or name.startswith(READOUT_ONLY_PREFIXES)


def cache_groups(space: Mapping[str, Any]) -> list[list[str]]:
    """One binding list per distinct feature-relevant grid point (block and readout axes dropped)."""
    seen, groups = set(), []
    for point in expand_grid(space):
        relevant = {k: v for k, v in point.items() if not _readout_only(k, v)}
        bindings = to_bindings(relevant)
        if tuple(bindings) not in seen:
            seen.add(tuple(bindings))
            groups.append(bindings)
    return groups


def grid_blocks(space: Mapping[str, Any]) -> list:
    """The block specs of the grid's block axis ([] when blocks are not swept)."""
    spec = space.get(BLOCK_KEY)
    if isinstance(spec, Mapping) and "grid_search" in spec:
        return list(spec["grid_search"])
    return [spec] if isinstance(spec, (int, float)) else []


# ----------------------------------------------------------------------------- in Ray workers

def _enter(driver: Mapping) -> gin_setup.GinArgs:
    # Tune moves a trial into its own working dir; relative paths in gin mean the driver's cwd.
    os.chdir(driver["cwd"])
    return gin_setup.GinArgs(files=tuple(driver["gin"]["files"]),
                             bindings=tuple(driver["gin"]["bindings"]),
                             search_paths=tuple(driver["gin"]["search_paths"]))


def prepare_cache(driver: Mapping, bindings: Sequence[str], split: str) -> dict:
    """Ray task: the cache entry of one feature-relevant grid point and split (all grid blocks)."""
    from probing import extract

    gin_args = _enter(driver)
    gin_setup.parse(gin_args, bindings)
    probe = trial.build_probe()
    if not probe.use_cache:
        return {"split": split, "skipped": "Probe.use_cache is off"}
    run = configurables.Run()
    trial.place_backbone(probe.backbone, run.torch_device())
    # The grid's block axis (Probe.cache_blocks); the gin file's own block only without one.
    blocks = extract.valid_blocks(list(probe.cache_blocks) or [probe.block], probe.backbone.num_blocks)
    if not blocks:
        return {"split": split, "skipped": "no valid block in this grid point"}
    entry, created = extract.ensure_probe_entry(probe, split, blocks)
    return {"split": split, "path": str(entry.path), "created": created, "blocks": list(entry.blocks),
            "backbone_batches": entry.manifest.get("backbone_batches", 0) if created else 0}


def run_trial(config: Mapping, driver: Mapping) -> None:
    """The Tune trainable: one grid point -> run_probe -> tune.report."""
    from ray import tune


    sample = dict(config.get("gin", {}))
    out = Path(driver["exp_dir"]) / "trials" / trial_key(sample, driver["gin"])
    done = out / "metrics.json"
    if done.is_file():
        try:
            previous = trial.ProbeResult.read(done)
        except ValueError:
            previous = None  # unreadable (older schema, torn by hand): rerun the trial
        if previous is not None and previous.status in (trial.STATUS_OK, trial.STATUS_DIVERGED):
            # Finished in an earlier run of this sweep: report the stored result, do not retrain.
            tune.report(_reportable(previous, reused=True))
            return
    gin_setup.write_text_atomic(out / "trial.json", json.dumps(
        {"sample": sample, "bindings": to_bindings(sample), "driver_gin": driver["gin"]}, indent=2, default=str))
    gin_args = _enter(driver)
    extra = [*driver["sweep_bindings"], *to_bindings(sample), f"Run.output_dir = {str(out)!r}"]
    try:
        result = trial.run_probe(gin_args, extra, bindings=to_bindings(sample))
    except BaseException as err:
        if getattr(err, "probe_result", None) is None:  # failed before the engine ran (gin)
            trial.record_failure(err, out, bindings=to_bindings(sample), **report_fields(sample))
        raise
    tune.report(_reportable(result, reused=False))


def report_fields(sample: Mapping[str, Any]) -> dict:
    """The result fields a grid point fixes by itself (its block spec and t), recorded even when
    the trial fails before it learns the rest."""
    known = {}
    if isinstance(sample.get(BLOCK_KEY), (int, float)):
        known["block_spec"] = sample[BLOCK_KEY]
    if isinstance(sample.get("Probe.timestep"), int):
        known["t"] = sample["Probe.timestep"]
    return known


def _reportable(result, reused: bool) -> dict:
    keep = ("status", "task", "metric", "value", "higher_is_better", "block", "t", "backbone",
            "variant", "size", "wall_s", "backbone_batches", "feature_source", "error")
    out = {k: getattr(result, k) for k in keep}
    out["reused"] = reused
    return out


def trial_dirname(trial) -> str:
    """Short Tune trial folder names (the default embeds every binding and grows too long)."""
    return f"trial_{trial.trial_id}"


# ----------------------------------------------------------------------------- driver

def add_arguments(parser) -> None:
    parser.add_argument("--name", default=None, help="experiment name (default: Sweep.name)")
    parser.add_argument("--storage_path", default=None, help="experiments root (default: Sweep.storage_path)")
    parser.add_argument("--no-dashboard", dest="dashboard", action="store_false", default=None,
                        help="do not start the Ray dashboard (tests, shared machines)")
    parser.add_argument("--num_cpus", type=int, default=None, help="CPUs of the local Ray node")
    parser.add_argument("--fresh", action="store_true",
                        help="delete an existing experiment of this name and start over")
    parser.add_argument("--no-report", dest="report", action="store_false", default=None,
                        help="do not write <exp>/report when the sweep ends")


def _init_ray(sw: Sweep) -> None:
    import ray

    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0")
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ctx = ray.init(address=address, log_to_driver=True)
        print(f"sweep: joined the Ray cluster at {address}", flush=True)
    else:
        ctx = ray.init(num_cpus=sw.num_cpus, num_gpus=sw.num_gpus, include_dashboard=sw.dashboard,
                       dashboard_host=sw.dashboard_host, dashboard_port=sw.dashboard_port,
                       log_to_driver=True)
    url = getattr(ctx, "dashboard_url", None)
    if sw.dashboard and url:
        print(f"sweep: Ray dashboard at http://{url} (token auth: `ray get-auth-token` prints the "
              f"token; keep it on 127.0.0.1, tunnel with ssh -L 8265:127.0.0.1:8265 to view remotely)",
              flush=True)


def _prepare_caches(sw: Sweep, driver: dict, space: Mapping) -> None:
    import ray

    groups = cache_groups(space)
    task = ray.remote(prepare_cache).options(num_cpus=sw.cpus_per_trial, num_gpus=sw.gpus_per_trial,
                                             max_retries=0)
    refs = {task.remote(driver, [*driver["sweep_bindings"], *g], split): (g, split)
            for g in groups for split in ("train", "val")}
    print(f"sweep: preparing feature caches: {len(refs)} task(s) ({len(groups)} grid point(s) x 2 splits)",
          flush=True)
    created = batches = 0
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        g, split = refs[ready[0]]
        try:
            res = ray.get(ready[0])
        except Exception as err:  # noqa: BLE001 - its trials will fail with their own message
            print(f"sweep: cache for {g or 'base config'} [{split}] failed: {str(err).splitlines()[-1]}",
                  flush=True)
            continue
        created += bool(res.get("created"))
        batches += res.get("backbone_batches", 0)
        state = "extracted" if res.get("created") else res.get("skipped") or "already cached"
        print(f"sweep: cache {len(refs) - len(pending)}/{len(refs)} [{split}] {' '.join(g) or 'base config'}: "
              f"{state}", flush=True)
    print(f"sweep: caches ready ({created} extracted, {len(refs) - created} reused or skipped, "
          f"{batches} backbone batches)", flush=True)


def _signature(gin_args: gin_setup.GinArgs, space: Mapping) -> dict:
    return {"gin": gin_args.to_dict(), "space": json.loads(json.dumps(space, default=repr)),
            "code": code_fingerprint()}


def _forward_sigterm() -> None:
    # Tune saves the experiment state on SIGINT; make SIGTERM (kill, schedulers) do the same.
    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    signal.signal(signal.SIGTERM, handler)


def main(args, gin_args) -> int:
    import gin

    sw: Sweep = gin.get_configurable("Sweep")()
    if args.dashboard is not None:
        sw.dashboard = args.dashboard
    if args.num_cpus is not None:
        sw.num_cpus = args.num_cpus
    if args.report is not None:
        sw.report = args.report
    if not sw.space:
        print("walt-probe sweep: no search space: set Sweep.space = @block_x_timestep() (or "
              "@variants(), @scaling(), @backbones()) in a gin file", file=sys.stderr)
        return 2
    try:
        space = merge_spaces(sw.space)
    except ValueError as err:
        print(f"walt-probe sweep: {err}", file=sys.stderr)
        return 2
    name = args.name or sw.name
    exp_dir = Path(args.storage_path or sw.storage_path).expanduser().resolve() / name
    signature = _signature(gin_args, space)
    sig_path = exp_dir / "sweep.json"
    if args.fresh and exp_dir.exists():
        import shutil
        shutil.rmtree(exp_dir)
    old = json.loads(sig_path.read_text()) if sig_path.exists() else None
    if old is not None and {k: v for k, v in old.items() if k != "code"} != \
            {k: v for k, v in signature.items() if k != "code"}:
        print(f"walt-probe sweep: {exp_dir} holds a different sweep (other gin files, bindings or "
              f"space). Use --name for a new experiment, or --fresh to replace it.", file=sys.stderr)
        return 2
    if old is not None and old.get("code") != signature["code"]:
        print(f"walt-probe sweep: {exp_dir} was run by other code (the project's source changed "
              f"since: code {old.get('code')} -> {signature['code']}); resuming would keep its "
              f"finished trials as they are. Use --fresh to rerun it, or --name for a new "
              f"experiment.", file=sys.stderr)
        return 2
    gin_setup.write_text_atomic(sig_path, json.dumps(signature, indent=2))

    blocks = grid_blocks(space)
    driver = {"cwd": os.getcwd(), "exp_dir": str(exp_dir), "gin": gin_args.to_dict(),
              "sweep_bindings": [f"Probe.cache_blocks = {blocks!r}"] if blocks else []}
    _init_ray(sw)
    _forward_sigterm()
    from ray import tune

    from runners.tune_progress import TrialLines

    trainable = tune.with_resources(tune.with_parameters(run_trial, driver=driver),
                                    {"cpu": sw.cpus_per_trial, "gpu": sw.gpus_per_trial})
    t0 = time.time()
    if sw.prepare_caches:
        _prepare_caches(sw, driver, space)
    if tune.Tuner.can_restore(str(exp_dir)):
        print(f"sweep: resuming {exp_dir} (finished trials are kept, errored ones rerun)", flush=True)
        tuner = tune.Tuner.restore(str(exp_dir), trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable, param_space={"gin": space},
            tune_config=tune.TuneConfig(num_samples=sw.num_samples, reuse_actors=sw.reuse_actors,
                                        max_concurrent_trials=sw.max_concurrent_trials,
                                        trial_dirname_creator=trial_dirname),
            run_config=tune.RunConfig(name=name, storage_path=str(exp_dir.parent), verbose=0,
                                      callbacks=[TrialLines()],
                                      failure_config=tune.FailureConfig(max_failures=0)))
    grid = tuner.fit()
    return _summarize(grid, exp_dir, sw, time.time() - t0)


def _summarize(grid, exp_dir: Path, sw: Sweep, wall: float) -> int:
    from runners.tune_progress import describe

    counts: dict[str, int] = {}
    print("sweep: results")
    for result in grid:
        m = result.metrics or {}
        axes = describe(result.config) or "(unknown grid point)"
        if result.error is not None:
            status, lines = "error", str(result.error).strip().splitlines()
            text = lines[-1] if lines else type(result.error).__name__
        elif not m.get("status"):
            status, text = "unfinished", "not run yet (the sweep was stopped); rerun the same command"
        elif m["status"] != "ok":
            status, text = m["status"], m.get("error")
        else:
            status = "ok"
            text = f"{m.get('metric')} = {m.get('value'):.4f}" + (" (reused)" if m.get("reused") else "")
        counts[status] = counts.get(status, 0) + 1
        print(f"  {status:10s} {axes}: {text}")
    tally = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"sweep: {len(grid)} trials ({tally}), {wall:.0f}s -> {exp_dir}", flush=True)
    if sw.report:
        from runners import report
        try:
            report.write_report([exp_dir], exp_dir / "report")
            print(f"sweep: report in {exp_dir / 'report'} (walt-probe report {exp_dir} --out DIR redraws it)")
        except Exception as err:  # noqa: BLE001  the trials are done; a report bug must not undo that
            print(f"sweep: the closing report failed ({type(err).__name__}: {err}); the trials' results "
                  f"are kept: draw it with walt-probe report {exp_dir} --out DIR", file=sys.stderr)
    else:
        print(f"sweep: next: walt-probe report {exp_dir} --out {exp_dir / 'report'}")
    return 130 if counts.get("unfinished") else 0
