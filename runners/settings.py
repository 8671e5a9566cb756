"""Settings of the commands: `Run` (every command: outputs, seed, device) and `Sweep` (one Ray Tune
sweep), plain dataclasses that runners/configurables.py registers with gin."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import torch


@dataclasses.dataclass
class Run:
    """Per-run settings, bound in gin as `Run.output_dir`, `Run.seed`, `Run.device`.

    output_dir: folder for the run's outputs (metrics.json, operative_config.gin, logs).
    seed: seeds torch, numpy and python's random for the run.
    device: 'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'.
    """

    output_dir: str = "runs/latest"
    seed: int = 0
    device: str = "auto"

    @property
    def path(self) -> Path:
        return Path(self.output_dir).expanduser().resolve()

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


@dataclasses.dataclass
class Sweep:
    """One sweep's settings (gin: `Sweep.<field>`).

    space: binding -> tune spec, usually `@block_x_timestep()` / `@variants()` / `@scaling()`, or
      a list of such spaces whose axes multiply (their keys must differ).
    name: experiment name; results go to <storage_path>/<name>.
    storage_path: root folder of experiments (absolute, or relative to the cwd).
    cpus_per_trial, gpus_per_trial: Ray resources of each trial and cache task (fractions allowed).
    num_cpus, num_gpus: size of the local Ray node (None: the machine); ignored with RAY_ADDRESS.
    max_concurrent_trials: None lets Ray fill the resources.
    num_samples: repeats of the grid (seeds: bind Run.seed in the space instead for named seeds).
    reuse_actors: run consecutive trials in the same worker process (imports paid once; every
      trial still clears and re-parses gin).
    dashboard, dashboard_host, dashboard_port: Ray dashboard of a local node.
    prepare_caches: extract the grid's caches first (when Probe.use_cache is on).
    report: run `walt-probe report` into <exp>/report when the sweep ends.
    max_failures: retries of a trial (and of a cache task) that fails, e.g. because its node
      died; None: 0 on one machine (a failure there is a bug to see, not to retry), 3 on a
      cluster joined through RAY_ADDRESS. A retried trial starts clean in the same result folder,
      so the report counts it once.
    pin: binding -> extra Ray resources for the trials whose grid point has that binding, e.g.
      {"Probe.timestep = 500": {"big_gpu": 1}} runs the t = 500 trials only on nodes started with
      `ray start --resources='{"big_gpu": N}'`.
    """

    space: Mapping[str, Any] | None = None
    name: str = "sweep"
    storage_path: str = "runs/sweeps"
    cpus_per_trial: float = 1
    gpus_per_trial: float = 0
    num_cpus: int | None = None
    num_gpus: int | None = None
    max_concurrent_trials: int | None = None
    num_samples: int = 1
    reuse_actors: bool = True
    dashboard: bool = True
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8265
    prepare_caches: bool = True
    report: bool = True
    max_failures: int | None = None
    pin: Mapping[str, Mapping[str, float]] | None = None
