"""Probe.feature_residence: a probe on cached features gives the same result wherever the
cached block is batched from, and whether or not the trial had to fill the cache first."""

import json
import os
import sys

import pytest

from runners import cli

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from probe_fixtures import smoke_args  # noqa: E402


@pytest.mark.parametrize("residence", ["host", "stream"])
def test_residence_does_not_change_the_result(tmp_path, synthetic_cache, residence):
    cache = tmp_path / "cache"
    metrics = {}
    for where in ("auto", residence):
        out = tmp_path / where
        assert cli.main(["probe", *smoke_args(out, "--gin.Probe.use_cache=True", "--gin.STEPS=5",
                                              f"--gin.Probe.cache_dir='{cache}'",
                                              f"--gin.Probe.feature_residence='{where}'")]) == 0
        metrics[where] = json.loads((out / "metrics.json").read_text())
    a, b = metrics["auto"], metrics[residence]
    assert a["feature_source"] == b["feature_source"] == "cache"
    assert b["backbone_batches"] == 0 < a["backbone_batches"]  # the first run filled the cache
    assert a["metrics"] == b["metrics"] and a["final_loss"] == b["final_loss"]


def test_unknown_residence_is_named(tmp_path, synthetic_cache, capsys):
    assert cli.main(["probe", *smoke_args(tmp_path / "r", "--gin.Probe.feature_residence='gpu'")]) != 0
    assert "feature_residence" in capsys.readouterr().err


def test_compiled_head_trains_to_the_eager_result(tmp_path, synthetic_cache, monkeypatch):
    import torch
    modes, compile_ = [], torch.compile

    def spy(model, **kwargs):
        modes.append(kwargs.get("mode"))
        return compile_(model, **kwargs)

    monkeypatch.setattr(torch, "compile", spy)
    cache = tmp_path / "cache"
    metrics = {}
    for mode in ("None", "'default'"):
        out = tmp_path / mode.strip("'")
        assert cli.main(["probe", *smoke_args(out, "--gin.Probe.use_cache=True", "--gin.STEPS=5",
                                              f"--gin.Probe.cache_dir='{cache}'",
                                              f"--gin.Probe.compile_head={mode}")]) == 0
        metrics[mode] = json.loads((out / "metrics.json").read_text())
    eager, comp = metrics["None"], metrics["'default'"]
    assert modes == ["default"]                        # only the second run compiled, the head only
    assert eager["compile_head"] is None and comp["compile_head"] == "default"
    assert comp["head_params"] == eager["head_params"]
    assert comp["final_loss"] == pytest.approx(eager["final_loss"], rel=1e-4)
    assert comp["metrics"] == pytest.approx(eager["metrics"], abs=1e-6)


def test_unknown_compile_mode_is_named(tmp_path, synthetic_cache, capsys):
    assert cli.main(["probe", *smoke_args(tmp_path / "r", "--gin.Probe.compile_head='fast'")]) != 0
    assert "compile_head = 'fast'" in capsys.readouterr().err
