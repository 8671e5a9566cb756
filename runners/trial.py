"""The Trial: one probe run configured by gin, shared by `walt-probe probe` and every Ray Tune trial.

  run_probe(gin_args, extra_bindings) -> ProbeResult

parses gin (files, CLI bindings, then extra_bindings; later wins), builds `Probe` and `Run`
from it and hands them to the engine (probing/probe.py `run`), which writes metrics.json and
TensorBoard logs into `Run.output_dir`; this module adds

  operative_config.gin    what was used (rerun with --gin_file=<dir>/operative_config.gin)
  config.gin, gin_args.json
"""

from __future__ import annotations

import copy
import dataclasses
import traceback
from pathlib import Path
from typing import Sequence

import gin

from probing import probe as engine
from probing.kept import KeptHeadError  # noqa: F401  (re-exported for the commands)
from probing.extract import ConfigError  # noqa: F401  (re-exported for the commands)
from probing.probe import Probe, place_backbone  # noqa: F401
from probing.result import STATUS_DIVERGED, STATUS_FAILED, STATUS_OK, ProbeResult, failed  # noqa: F401
from runners import configurables, gin_setup  # noqa: F401  configurables: registers every name


def _bound(selector: str):
    """The value gin binds to `selector` (macros followed; references evaluated), or None."""
    try:
        value = gin.query_parameter(selector)
    except ValueError:
        return None
    return copy.deepcopy(value) if isinstance(value, gin.config.ConfigurableReference) else value


def build_probe() -> Probe:
    """`Probe` from the parsed gin config, validated; its optimiser is gin's `PaperOptimizer` unless
    one is bound, so PaperOptimizer.lr etc. apply and the operative config records them."""
    probe = gin.get_configurable("Probe")()
    if probe.optimizer is None:
        probe = dataclasses.replace(probe, optimizer=gin.get_configurable("PaperOptimizer"))
    return probe.validate()


def known_labels() -> dict:
    """The labels a failed run must keep, from the parsed gin config: block_spec and t as bound,
    and the task's name, metric and direction when the task alone builds (a run whose backbone
    failed, e.g. on a corrupt checkpoint, still knows its task). Best effort: what cannot be
    learnt is left out (the failure itself is what gets reported)."""
    known = {}
    for field, selector in (("block_spec", "Probe.block"), ("t", "Probe.timestep")):
        value = _bound(selector)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if field == "block_spec":
            known[field] = value
        elif value == int(value):  # the result's t is an int; a non-integer t is the error itself
            known[field] = int(value)
    try:
        task = _bound("Probe.task")
    except Exception:  # noqa: BLE001 - the task itself may be what failed
        task = None
    if all(hasattr(task, a) for a in ("name", "metric", "higher_is_better")):
        known.update(task=task.name, metric=task.metric, higher_is_better=bool(task.higher_is_better))
    return known


def run_probe(gin_args: gin_setup.GinArgs, extra_bindings: Sequence[str] = (),
              bindings: Sequence[str] = ()) -> ProbeResult:
    """One probe run configured by gin (see the module docstring). bindings: the trial's own
    (recorded in the result; a sweep passes its grid point's). A run that fails while its task
    or backbone is built leaves a 'failed' metrics.json with its bindings and the labels known
    by then (the exception carries it as `probe_result`, as the engine's own failures do)."""
    gin_setup.parse(gin_args, extra_bindings)
    run = gin.get_configurable("Run")()
    try:
        probe = build_probe()
    except Exception as err:
        err.probe_result = record_failure(err, run.path, bindings=bindings, **known_labels())
        raise

    def save_config(out, tb) -> None:
        gin_setup.save_operative_config(out, gin_args.with_bindings(*extra_bindings))
        tb.add_text("gin/operative_config", "    " + gin.operative_config_str().replace("\n", "\n    "))

    return engine.run(probe, run.path, seed=run.seed, device=run.torch_device(), on_finish=save_config,
                      bindings=bindings)


def eval_kept(gin_args: gin_setup.GinArgs, head_dir, split: str = "val",
              output_dir=None) -> ProbeResult:
    """Re-evaluates the head kept in `head_dir` (no training): gin is the run's operative config,
    then gin_args' files and bindings (e.g. another dataset of the task); results go to
    output_dir (default head_dir/eval/<split>)."""
    head_dir = Path(head_dir).expanduser().resolve()
    config = head_dir / "operative_config.gin"
    if not config.is_file():
        raise ConfigError(f"{head_dir} has no operative_config.gin; --head takes the folder of a "
                          f"probe run (Run.output_dir)")
    args = dataclasses.replace(gin_args, files=(str(config), *gin_args.files))
    gin_setup.parse(args)
    run = gin.get_configurable("Run")()
    probe = build_probe()
    if split not in probe.task.datasets:
        raise ConfigError(f"task {probe.task.name} has no split {split!r} (it has "
                          f"{sorted(probe.task.datasets)}); pass --split with one of them")
    out = Path(output_dir) if output_dir else head_dir / "eval" / split
    result = engine.evaluate_kept(probe, head_dir, out, split=split, device=run.torch_device(),
                                  bindings=list(gin_args.bindings))
    gin_setup.save_operative_config(out, args)
    return result


def record_failure(err: BaseException, out_dir, bindings: Sequence[str] = (), **known) -> ProbeResult:
    """Writes the 'failed' result of a trial that raised (message, traceback tail, its bindings)."""
    result = failed(err, out_dir, traceback="".join(traceback.format_exception(err))[-4000:],
                    bindings=bindings, **known)
    result.write(out_dir)
    return result
