"""Settings every command shares: where its outputs go, the seed, the device."""

from __future__ import annotations

import dataclasses
from pathlib import Path

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
