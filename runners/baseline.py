"""`walt-probe baseline`: the score of a task's trivial (input-free) predictor.

  walt-probe baseline --gin_file=tasks/synthetic/objects_imagenet.gin \
      [--gin.SyntheticObjects.num_train=2000] --out runs/baselines

The task is the one a probe would use: the macro TASK that a task gin file sets (the same
files and bindings as `walt-probe probe`; a probe experiment file works too). The predictor is
fitted on train and scored on val with the task's own accumulator (tasks/baselines.py), so the
number sits next to probe results in `walt-probe report --baselines DIR`.

Writes DIR/<task name>.json atomically:
  {task, kind, metric, higher_is_better, value, metrics, predictor, fit, alternatives,
   num_train, num_val, gin}
and prints one line. Exit status: 0 ok, 2 when gin names no task or the task cannot be scored.
No backbone is built and no device is used.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from walt_probe.errors import ConfigurationError

DEFAULT_OUT = "runs/baselines"


def add_arguments(parser) -> None:
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"folder for <task>.json (default: {DEFAULT_OUT})")
    parser.add_argument("--batch_size", type=int, default=32,
                        help="items per batch while fitting and scoring (default: 32)")


class NoTaskError(ConfigurationError):
    """The parsed gin config does not name a task."""


def task_from_gin():
    """The Task bound to the macro TASK of the parsed gin config (built now)."""
    import gin

    try:
        value = gin.query_parameter("%TASK")
    except ValueError:
        raise NoTaskError("no task: the gin files set no macro TASK; include a task file, e.g. "
                          "--gin_file=tasks/synthetic/objects_imagenet.gin") from None
    # A reference marked for evaluation (`@SyntheticObjects()`) builds its object on deepcopy.
    task = copy.deepcopy(value)
    if not all(hasattr(task, a) for a in ("name", "datasets", "new_accumulator", "metric")):
        raise NoTaskError(f"TASK = {value!r} is not a task (tasks/task.py Task); bind it to a task "
                          f"builder, e.g. TASK = @SyntheticObjects()")
    return task


def file_name(task_name: str) -> str:
    """'<task name>.json' with anything but letters, digits, '-' and '_' replaced by '_'."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in task_name) + ".json"


def one_line(result: dict, path: Path) -> str:
    direction = "higher" if result["higher_is_better"] else "lower"
    return (f"baseline {result['task']}: {result['metric']} = {result['value']:.4g} ({direction} is "
            f"better) from {result['predictor']}; train {result['num_train']}, val "
            f"{result['num_val']} -> {path}")


def main(args, gin_args) -> int:
    from runners import gin_setup
    from tasks import baselines

    # A config without a task or a task without a trivial predictor raises a WaltProbeError,
    # reported once by runners/cli.py (exit 2).
    task = task_from_gin()
    result = baselines.trivial_metrics(task, batch_size=args.batch_size)
    result["gin"] = gin_args.to_dict()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / file_name(task.name)
    gin_setup.write_text_atomic(path, json.dumps(result, indent=2) + "\n")
    print(one_line(result, path))
    return 0
