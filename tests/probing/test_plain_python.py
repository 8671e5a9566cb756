"""A probe from plain Python, no gin anywhere in the process, gives the CLI's number.

The script below builds the smoke configuration (gin/experiments/smoke_tiny.gin with the test
overrides of tests/runners/probe_fixtures.py) from library calls only, runs the engine in a
subprocess and reports whether `gin` was ever imported; the same configuration then runs
through `walt-probe probe`, and the two headline values must be equal.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "runners"))
from probe_fixtures import smoke_args  # noqa: E402

SCRIPT = r"""
import functools, json, sys

from backbones.build import build_backbone
from probing.probe import Probe, run
from readouts.optim import paper_optimizer
from tasks.synthetic.builders import motion_task

backbone = build_backbone(size="tiny", variant="video", tokenizer="tiny", image_size=32,
                          num_frames=5, seed=0, device="cpu")
task = motion_task(num_train=8, num_val=4, image_size=32, num_frames=5,
                   head_kwargs={"width": 32, "num_heads": 2})
probe = Probe(backbone=backbone, task=task, block=2, timestep=100, steps=3, batch_size=4,
              eval_batch_size=4, log_every=4,
              optimizer=functools.partial(paper_optimizer, lr=3e-4, warmup=0, final_lr=1e-7,
                                          weight_decay=1e-4))
result = run(probe, sys.argv[1], seed=0, device="cpu")
print("RESULT " + json.dumps({"value": result.value, "status": result.status,
                              "family": result.family, "size": result.size,
                              "gin_imported": "gin" in sys.modules, "ray_imported": "ray" in sys.modules}))
"""


def test_plain_python_probe_imports_no_gin_and_matches_the_cli(tmp_path, synthetic_cache):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "plain")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    plain = json.loads(line[len("RESULT "):])
    assert plain["gin_imported"] is False and plain["ray_imported"] is False
    assert plain["status"] == "ok" and plain["family"] == "walt" and plain["size"] == "tiny"

    from runners import cli
    out = tmp_path / "cli"
    assert cli.main(["probe", *smoke_args(out), "--gin.Run.device='cpu'"]) == 0
    via_cli = json.loads((out / "metrics.json").read_text())
    assert via_cli["value"] == pytest.approx(plain["value"], abs=0.0)
    assert via_cli["block"] == 2 and via_cli["t"] == 100
