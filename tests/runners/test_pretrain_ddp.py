"""DDP with the gloo backend, 2 CPU processes, tiny size: the same loss curve as one process.

Batches are drawn over the global batch from (seed, step) and each rank takes its slice, so a
2-process run averages the same per-example losses (and gradients) as a 1-process run.
"""

import json
import os
import socket
import sys

import pytest
import torch.multiprocessing as mp

from pretraining.stages import run_stage
from runners.gin_setup import GinArgs, save_operative_config
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shared tiny fixtures
from pretrain_fixtures import run_settings, tiny_config  # noqa: E402


def save_gin(run_dir):
    """What the CLI passes as run_stage's save_config: the (empty) gin config of the run."""
    save_operative_config(run_dir, GinArgs())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    import torch
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    run_stage(tiny_config(stage="tokenizer", steps=3, fractions=(1.0,), sample_steps=1),
              run_settings(out), save_gin)


@pytest.mark.timeout(600)
def test_gloo_two_processes_match_one(tmp_path):
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path / "ddp")), nprocs=2, join=True,
                       start_method="spawn")
    run_stage(tiny_config(stage="tokenizer", steps=3, fractions=(1.0,), sample_steps=1),
              run_settings(tmp_path / "single"), save_gin)
    ddp = json.loads((tmp_path / "ddp" / "history.json").read_text())
    one = json.loads((tmp_path / "single" / "history.json").read_text())
    assert json.loads((tmp_path / "ddp" / "run.json").read_text())["world_size"] == 2
    assert ddp["step"] == one["step"] == [1, 2, 3]
    assert ddp["loss"] == pytest.approx(one["loss"], rel=1e-4)
