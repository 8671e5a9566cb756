"""The linear readout: shapes, parameter count, and selection by one gin binding on a task."""

import json
import math
import os
import sys

import pytest
import torch

from readouts.linear import LinearReadout

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "runners"))


def test_shapes_and_parameter_count():
    x = torch.randn(2, 5, 4, 4, 16)
    pooled, tokens = LinearReadout(16, 3), LinearReadout(16, 3, pool="token")
    assert pooled(x).shape == (2, 3) and tokens(x).shape == (2, 5, 4, 4, 3)
    assert sum(p.numel() for p in pooled.parameters()) == 16 * 3 + 3
    with pytest.raises(ValueError, match="pool must be one of"):
        LinearReadout(16, 3, pool="max")
    with pytest.raises(ValueError, match="feature width 8 != 16"):
        pooled(torch.randn(2, 5, 4, 4, 8))


def test_selected_by_one_binding_and_trains_on_a_synthetic_task(tmp_path, monkeypatch):
    from probe_fixtures import smoke_args
    from runners import cli

    monkeypatch.setenv("WALT_PROBE_SYNTHETIC_CACHE", str(tmp_path / "synthetic"))
    out = tmp_path / "run"
    # The one binding: the motion task's head factory. The rest only lets 40 steps learn.
    argv = smoke_args(out, "--gin.SyntheticMotionActions.make_head=@LinearReadout",
                      "--gin.STEPS=40", "--gin.PaperOptimizer.warmup=1", "--gin.PaperOptimizer.lr=1e-2",
                      "--gin.Run.device='cpu'")
    assert cli.main(["probe", *argv]) == 0
    m = json.loads((out / "metrics.json").read_text())
    d, k = 192, 11  # tiny WALT width, motion classes
    assert m["status"] == "ok" and m["head_params"] == d * k + k
    # A fresh linear head scores about log(k) nats; 40 steps fit 8 training clips well below it.
    assert m["final_loss"] < 0.6 * math.log(k)
    assert "make_head = @LinearReadout" in (out / "operative_config.gin").read_text()
