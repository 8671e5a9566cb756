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
   (by default) `walt-probe report` output under <exp>/report/ close the run; a report that
   fails is reported and never turns a finished sweep into a crash.

Supervision: exit 0 when every trial is ok, 3 when some trial failed, errored or diverged
(--allow-failures: 0), 2 for a configuration error or an experiment folder locked by another
sweep (<exp>/sweep.lock names its pid and host; a dead holder's lock is taken over), 130 when
stopped before every trial ran. On one machine every Ray listener binds to 127.0.0.1 and a guard
process ends Ray's processes with the driver (runners/ray_local.py). The dashboard binds to
127.0.0.1:8265 (token auth: `ray get-auth-token` prints the token).

With RAY_ADDRESS set the sweep joins that cluster: every path a trial uses is made absolute,
the sweep checks that every node sees the same folders (a marker file per folder, one task per
node) and retries trials whose node died (Sweep.max_failures); docs/cluster.md.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import itertools
import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from runners import exp_lock, ray_local
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
    # Tune moves a trial into its own working dir. Every path the trial uses was made absolute by
    # the driver (`absolute_path_bindings`); the driver's cwd is entered where it exists (one
    # machine, or a shared home) only so that messages and stray relative paths read the same.
    if os.path.isdir(driver["cwd"]):
        os.chdir(driver["cwd"])
    return gin_setup.GinArgs(files=tuple(driver["gin"]["files"]),
                             bindings=tuple(driver["gin"]["bindings"]),
                             search_paths=tuple(driver["gin"]["search_paths"]))


# The splits a trial reads: train fits the head, val selects, test reports (Probe.eval_splits);
# their caches are filled before the trials start, so concurrent trials never extract them twice.
CACHED_SPLITS = ("train", "val", "test")


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
    if split not in probe.task.datasets:  # e.g. a task without a test split
        return {"split": split, "skipped": f"task {probe.task.name} has no {split} split"}
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
    parser.add_argument("--allow-failures", dest="allow_failures", action="store_true",
                        help=f"exit 0 even when trials failed, errored or diverged (default: exit "
                             f"{EXIT_TRIALS_NOT_OK})")


# Exit codes of `walt-probe sweep`: 0 every trial ok; 2 bad configuration or the folder is locked
# by another sweep; EXIT_TRIALS_NOT_OK some trial failed / errored / diverged (0 with
# --allow-failures); 130 stopped before every trial ran (rerun the command to resume).
EXIT_TRIALS_NOT_OK = 3
EXIT_UNFINISHED = 130

# Parameter and macro names whose string values are filesystem paths (made absolute for trials).
_PATH_NAME = re.compile(r"(path|dir|checkpoint|root|file)$", re.IGNORECASE)


def absolute_path_bindings(cwd: str | os.PathLike) -> list[str]:
    """Bindings that rebind every relative path in the parsed gin config to an absolute one.

    A trial may run on another node, in another working directory: every bound parameter or
    macro named like a path (`*_dir`, `*path`, `*checkpoint`, `*root`, `*file`) holding a relative
    string is bound again as `cwd / value` (for a checkpoint not found there, the repository's
    own copy, as `backbones.build.resolve_checkpoint` would find it). `Probe.cache_dir` is bound
    even when left at its default."""
    import gin
    from backbones.build import REPO_ROOT
    from probing.probe import Probe

    cwd = Path(cwd)

    def absolute(name: str, value: str) -> str:
        p = Path(value).expanduser()
        if p.is_absolute():
            return str(p)
        if "checkpoint" in name.lower() and not (cwd / p).exists() and (REPO_ROOT / p).exists():
            return str(REPO_ROOT / p)
        return str((cwd / p).resolve())

    out = []
    for (scope, selector), params in list(gin.config._CONFIG.items()):  # noqa: SLF001 - gin has no public walk
        for param, value in params.items():
            if not isinstance(value, str) or not value or "://" in value \
                    or Path(value).expanduser().is_absolute():
                continue  # not a path, a URL, or already absolute
            if selector == "gin.macro":
                if _PATH_NAME.search(scope):
                    out.append(f"{scope} = {absolute(scope, value)!r}")
            elif _PATH_NAME.search(param):
                target = f"{scope}/{selector}" if scope else selector
                out.append(f"{target}.{param} = {absolute(param, value)!r}")
    try:
        cache_dir = gin.query_parameter("Probe.cache_dir")
    except ValueError:
        cache_dir = Probe.__dataclass_fields__["cache_dir"].default
    if isinstance(cache_dir, str) and not any(b.startswith("probing.probe.Probe.cache_dir") for b in out):
        out.append(f"Probe.cache_dir = {absolute('cache_dir', cache_dir)!r}")
    return out


def shared_paths(driver: Mapping) -> dict[str, str]:
    """What every node must see as the driver does: label -> absolute folder. Outputs (the
    experiment, the feature cache, synthetic data) are created if missing; inputs named by path
    bindings (checkpoints, dataset roots) are checked through their folder when they exist."""
    paths = {"experiment folder (Sweep.storage_path)": driver["exp_dir"],
             "synthetic data (WALT_PROBE_SYNTHETIC_CACHE)": driver["env"]["WALT_PROBE_SYNTHETIC_CACHE"]}
    for binding in driver["sweep_bindings"]:
        name, _, value = binding.partition(" = ")
        if not _PATH_NAME.search(name.split(".")[-1]):
            continue
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            continue
        if not isinstance(value, str):
            continue
        p = Path(value)
        if name.endswith("cache_dir"):
            paths[name] = str(p)
        elif p.is_file():
            paths[name] = str(p.parent)  # a checkpoint: the marker goes next to it
        elif p.is_dir():
            paths[name] = str(p)
    return paths


def check_marker(markers: Mapping[str, list[str]]) -> dict:
    """Ray task, one per node: which of the driver's marker files this node cannot read back."""
    import socket

    missing = {}
    for label, (path, token) in markers.items():
        try:
            if Path(path).read_text() != token:
                missing[label] = f"{path} holds another marker"
        except OSError as err:
            missing[label] = f"{path}: {err.strerror}"
    return {"host": socket.gethostname(), "missing": missing}


def check_shared(paths: Mapping[str, str]) -> list[str]:
    """On a cluster of several nodes: the paths some node does not share, as messages ([] = ok).

    The driver writes a marker file with a random token into every folder; one task pinned to
    each alive node reads them back."""
    import uuid

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) < 2:
        return []
    token = uuid.uuid4().hex
    markers = {}
    for label, folder in paths.items():
        marker = Path(folder) / f".walt_probe_shared_{token}"
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
            marker.write_text(token)
        except OSError:
            continue  # a read-only input folder: it cannot be checked this way (docs/cluster.md)
        markers[label] = (str(marker), token)
    task = ray.remote(check_marker)
    try:
        refs = [task.options(num_cpus=0, max_retries=0,
                             scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(markers) for n in nodes]
        answers = ray.get(refs, timeout=300)
    finally:
        for path, _ in markers.values():
            Path(path).unlink(missing_ok=True)
    problems = []
    if all(not a["missing"] for a in answers):
        print(f"sweep: {len(nodes)} nodes; each read back the markers in {', '.join(paths[label] for label in markers)}",
              flush=True)
    for node, answer in zip(nodes, answers):
        for label, why in answer["missing"].items():
            problems.append(f"{label} = {paths[label]} is not shared with node {node['NodeManagerAddress']} "
                            f"({answer['host']}): {why}")
    return problems


def _init_ray(sw: Sweep, env: Mapping[str, str]) -> tuple[bool, Any]:
    """Start (or join) Ray; returns (joined a cluster, guard of the local node or None)."""
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0")
    address = os.environ.get("RAY_ADDRESS")
    runtime_env = {"env_vars": dict(env)}
    if address:
        import ray
        ray.init(address=address, log_to_driver=True, runtime_env=runtime_env)
        print(f"sweep: joined the Ray cluster at {address}", flush=True)
        return True, None
    # One machine: every Ray listener on 127.0.0.1, and a guard that ends Ray's processes with
    # the driver however it ends (runners/ray_local.py says why both are needed).
    ray_local.local_node_env()
    guard = ray_local.start_guard()
    import ray
    ctx = ray.init(num_cpus=sw.num_cpus, num_gpus=sw.num_gpus, include_dashboard=sw.dashboard,
                   dashboard_host=sw.dashboard_host, dashboard_port=sw.dashboard_port,
                   log_to_driver=True, runtime_env=runtime_env)
    url = getattr(ctx, "dashboard_url", None)
    if sw.dashboard and url:
        print(f"sweep: Ray dashboard at http://{url} (token auth: `ray get-auth-token` prints the "
              f"token; keep it on 127.0.0.1, tunnel with ssh -L 8265:127.0.0.1:8265 to view remotely)",
              flush=True)
    return False, guard


def _prepare_caches(sw: Sweep, driver: dict, space: Mapping, retries: int) -> None:
    import ray

    groups = cache_groups(space)
    # Retries: a task whose node died is run again elsewhere; the cache entry is written
    # atomically, so a half-written one is never seen.
    task = ray.remote(prepare_cache).options(num_cpus=sw.cpus_per_trial, num_gpus=sw.gpus_per_trial,
                                             max_retries=retries)
    refs = {task.remote(driver, [*driver["sweep_bindings"], *g], split): (g, split)
            for g in groups for split in CACHED_SPLITS}
    print(f"sweep: preparing feature caches: {len(refs)} task(s) ({len(groups)} grid point(s) x "
          f"{len(CACHED_SPLITS)} splits)",
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


def _clear_experiment(exp_dir: Path) -> None:
    """--fresh: delete the experiment's contents but not the lock this process holds in it."""
    import shutil

    for child in exp_dir.iterdir():
        if child.name == exp_lock.LOCK_NAME:
            continue
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def trial_resources(sw: Sweep):
    """Tune resources: the same for every trial, or per trial when Sweep.pin names bindings."""
    base = {"cpu": sw.cpus_per_trial, "gpu": sw.gpus_per_trial}
    if not sw.pin:
        return base
    from ray import tune

    def per_trial(config):
        bindings = set(to_bindings(dict(config.get("gin", {}))))
        extra = {}
        for binding, resources in sw.pin.items():
            if _normalize(binding) in {_normalize(b) for b in bindings}:
                extra.update(resources)
        return tune.PlacementGroupFactory([{"CPU": sw.cpus_per_trial, "GPU": sw.gpus_per_trial, **extra}])
    return per_trial


def _normalize(binding: str) -> str:
    return " ".join(binding.replace("=", " = ").split())


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
    try:
        lock = exp_lock.acquire(exp_dir)
    except exp_lock.SweepLocked as err:
        print(f"walt-probe sweep: {err}", file=sys.stderr)
        return 2
    if lock.stale:
        print(f"sweep: took over the stale lock of {exp_lock.describe(lock.stale)} (that sweep is "
              f"gone; its finished trials are kept)", flush=True)
    try:
        return _locked_main(args, gin_args, sw, space, name, exp_dir)
    finally:
        lock.release()


def _locked_main(args, gin_args, sw: Sweep, space: Mapping, name: str, exp_dir: Path) -> int:
    signature = _signature(gin_args, space)
    sig_path = exp_dir / "sweep.json"
    if args.fresh:
        _clear_experiment(exp_dir)
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

    from tasks.synthetic import dataset as synthetic_dataset

    blocks = grid_blocks(space)
    cwd = os.getcwd()
    driver = {"cwd": cwd, "exp_dir": str(exp_dir), "gin": gin_args.to_dict(),
              "sweep_bindings": [*absolute_path_bindings(cwd),
                                 *([f"Probe.cache_blocks = {blocks!r}"] if blocks else [])],
              # Workers on other nodes do not inherit the driver's environment: pass what matters.
              "env": {"WALT_PROBE_SYNTHETIC_CACHE": str(Path(synthetic_dataset.DEFAULT_CACHE).expanduser().resolve()),
                      **{k: os.environ[k] for k in ("WALT_PROBE_ROOT",) if k in os.environ}}}
    cluster, guard = _init_ray(sw, driver["env"])
    try:
        return _run(args, sw, space, name, exp_dir, driver, cluster)
    finally:
        import ray
        ray.shutdown()
        if guard is not None:
            guard.close()


def _run(args, sw: Sweep, space: Mapping, name: str, exp_dir: Path, driver: dict, cluster: bool) -> int:
    if cluster:
        problems = check_shared(shared_paths(driver))
        if problems:
            print("walt-probe sweep: this Ray cluster's nodes do not share every path the trials "
                  "use; put them on a filesystem every node mounts at the same path "
                  "(docs/cluster.md):\n  " + "\n  ".join(problems), file=sys.stderr)
            return 2
    max_failures = sw.max_failures if sw.max_failures is not None else (3 if cluster else 0)
    _forward_sigterm()
    from ray import tune

    from runners.tune_progress import TrialLines

    trainable = tune.with_resources(tune.with_parameters(run_trial, driver=driver), trial_resources(sw))
    t0 = time.time()
    if sw.prepare_caches:
        _prepare_caches(sw, driver, space, retries=max_failures)
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
                                      failure_config=tune.FailureConfig(max_failures=max_failures)))
    grid = tuner.fit()
    return _summarize(grid, exp_dir, sw, time.time() - t0, allow_failures=args.allow_failures)


def _summarize(grid, exp_dir: Path, sw: Sweep, wall: float, allow_failures: bool = False) -> int:
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
        # The report must never turn a finished sweep into a crash: its failure is reported and
        # the sweep's own exit code stands.
        try:
            from runners import report
            report.write_report([exp_dir], exp_dir / "report")
            print(f"sweep: report in {exp_dir / 'report'} (walt-probe report {exp_dir} --out DIR redraws it)")
        except Exception as err:  # noqa: BLE001
            print(f"sweep: the report could not be written ({type(err).__name__}: {err}); the trials' "
                  f"results are in {exp_dir / 'trials'}; retry with walt-probe report {exp_dir} "
                  f"--out {exp_dir / 'report'}", file=sys.stderr, flush=True)
    else:
        print(f"sweep: next: walt-probe report {exp_dir} --out {exp_dir / 'report'}")
    if counts.get("unfinished"):
        return EXIT_UNFINISHED
    not_ok = sum(n for s, n in counts.items() if s != "ok")
    if not_ok and not allow_failures:
        print(f"sweep: {not_ok} trial(s) not ok -> exit {EXIT_TRIALS_NOT_OK} (--allow-failures "
              f"exits 0)", file=sys.stderr, flush=True)
        return EXIT_TRIALS_NOT_OK
    return 0
