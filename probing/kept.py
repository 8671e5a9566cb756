"""Kept readouts: a probe's trained head and its predictions, saved in the run folder.

  head.safetensors   the head's state dict (float32 as trained)
  head.json          what rebuilds and identifies it: task, feature_dim, head class, parameter
                     count, block, t, noise settings, the backbone's fingerprint, the split and
                     metric value it was reported on
  predictions.npz    the head's predictions on the reported split, one row per example
                     (see `Predictions`)

The head is rebuilt by the task's own factory (`task.make_head(feature_dim)`), so the task and
backbone come from the run's configuration (operative_config.gin) and only the weights come from
here; `load_head` checks that the rebuilt head has exactly the saved parameter names and shapes.
Files are written atomically (temp file + rename), weights first, the JSON last: a folder with a
head.json has a complete head.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from walt.checkpoint import _atomic, write_text_atomic
from walt_probe.errors import ConfigurationError

HEAD_WEIGHTS, HEAD_CONFIG, PREDICTIONS = "head.safetensors", "head.json", "predictions.npz"


class KeptHeadError(ConfigurationError, ValueError):
    """A kept head is missing, incomplete, or does not fit the task / backbone it is loaded for."""


def save_head(out_dir: str | Path, head: torch.nn.Module, config: dict) -> Path:
    """Writes `<out_dir>/head.safetensors` and `head.json` (config + head class + parameter
    count); returns the weights path."""
    out = Path(out_dir)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in head.state_dict().items()}
    _atomic(out / HEAD_WEIGHTS, lambda tmp: save_file(state, tmp))
    meta = {**config, "head_class": f"{type(head).__module__}.{type(head).__qualname__}",
            "head_params": sum(p.numel() for p in head.parameters()),
            "weights": HEAD_WEIGHTS, "predictions": PREDICTIONS}
    write_text_atomic(out / HEAD_CONFIG, json.dumps(meta, indent=2, sort_keys=True))
    return out / HEAD_WEIGHTS


def read_config(run_dir: str | Path) -> dict:
    """head.json of a run folder, or KeptHeadError saying how to get one."""
    path = Path(run_dir) / HEAD_CONFIG
    if not path.is_file() or not (Path(run_dir) / HEAD_WEIGHTS).is_file():
        raise KeptHeadError(f"{run_dir} has no kept head ({HEAD_CONFIG} + {HEAD_WEIGHTS}); rerun "
                            f"the probe with Probe.keep_head = True (the default)")
    return json.loads(path.read_text())


def load_head(run_dir: str | Path, task, feature_dim: int) -> tuple[torch.nn.Module, dict]:
    """(head with the kept weights, head.json) rebuilt by `task.make_head(feature_dim)`."""
    config = read_config(run_dir)
    if config.get("task") != task.name or int(config.get("feature_dim", -1)) != int(feature_dim):
        raise KeptHeadError(f"the head in {run_dir} was trained for task '{config.get('task')}' on "
                            f"D = {config.get('feature_dim')} features; this probe has task "
                            f"'{task.name}' with D = {feature_dim}. Evaluate it with the run's own "
                            f"task and backbone (its operative_config.gin)")
    head = task.make_head(int(feature_dim))
    state = load_file(str(Path(run_dir) / HEAD_WEIGHTS))
    want = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in state.items()}
    if want != have:
        diff = sorted(set(want.items()) ^ set(have.items()))[:4]
        raise KeptHeadError(f"the head in {run_dir} does not fit the head this task builds "
                            f"(first differences: {diff}); the task's head settings changed since")
    head.load_state_dict(state)
    return head, config


def _batch_size(batch: dict) -> int:
    return int(torch.as_tensor(batch["index"]).shape[0])


def _flat(preds: Any) -> dict[str, torch.Tensor]:
    """A head's output as {name: tensor}: a bare tensor is the classifier's 'logits'."""
    if isinstance(preds, torch.Tensor):
        return {"logits": preds}
    if isinstance(preds, dict):
        return {k: v for k, v in preds.items() if isinstance(v, torch.Tensor)}
    raise TypeError(f"cannot keep predictions of type {type(preds).__name__}")


class Predictions:
    """Collects a head's predictions batch by batch and writes predictions.npz.

    Keys of the file (N = examples of the split, in evaluation order):
      index          int64 (N,) the examples' positions in their split (tasks/task.py)
      pred_<name>    every tensor the head returns, under the head's own name: a classifier's
                     bare tensor is `pred_logits` (N, k); DepthReadout `pred_depth` (N, T, H', W')
                     with `pred_rows` / `pred_cols` (the decoded pixel rows / columns, the same
                     for every batch, stored once); PoseReadout `pred_pose` (N, 3, 4);
                     TrackingReadout `pred_values` (N, q, T, 2|4 normalised to [0, 1]) and
                     `pred_logits` (visibility / certainty logits)
      pred_label     int64 (N,) argmax of the logits (classification only)
      <item key>     the targets the task scores against (label, depth, pose, query_points,
                     target_points, occluded, boxes, box_valid), as the items carry them
    Head outputs with at least 2 axes, the first the batch, are per example; any other head
    output (DepthReadout's 1-D rows / cols) is stored from the first batch only.
    """

    TARGETS = ("label", "depth", "pose", "query_points", "target_points", "occluded", "boxes",
               "box_valid")

    def __init__(self):
        self.rows: dict[str, list[np.ndarray]] = {}
        self.once: dict[str, np.ndarray] = {}

    def update(self, preds: Any, batch: dict) -> None:
        b = _batch_size(batch)
        per_example = {"index": torch.as_tensor(batch["index"])}
        per_example.update({k: torch.as_tensor(batch[k]) for k in self.TARGETS if k in batch})
        if isinstance(preds, torch.Tensor) and preds.ndim == 2:
            per_example["pred_label"] = preds.argmax(dim=-1)
        for k, v in _flat(preds).items():
            if v.ndim >= 2 and v.shape[0] == b:
                per_example[f"pred_{k}"] = v
            else:
                self.once.setdefault(f"pred_{k}", v.detach().cpu().numpy())
        for k, v in per_example.items():
            self.rows.setdefault(k, []).append(v.detach().cpu().numpy())

    def arrays(self) -> dict[str, np.ndarray]:
        return {**{k: np.concatenate(v) for k, v in self.rows.items()}, **self.once}

    def write(self, out_dir: str | Path) -> Path:
        path = Path(out_dir) / PREDICTIONS
        arrays = self.arrays()

        def write(tmp):
            with open(tmp, "wb") as fh:  # a file object: np.savez would append '.npz' to a name
                np.savez_compressed(fh, **arrays)
        _atomic(path, write)
        return path


def read_predictions(run_dir: str | Path) -> dict[str, np.ndarray]:
    """predictions.npz of a run folder as {key: array}."""
    path = Path(run_dir) / PREDICTIONS
    if not path.is_file():
        raise KeptHeadError(f"{run_dir} has no {PREDICTIONS}; rerun the probe with "
                            f"Probe.keep_head = True (the default)")
    with np.load(path) as data:
        return {k: data[k] for k in data.files}
