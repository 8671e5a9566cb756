"""Each video DiT adapter built from its gin file and probed through the real CLI on the smoke
task (5-frame 32 x 32 synthetic motion clips, 8 readout steps), on tiny random pipelines."""

import json
import os
import sys

import gin
import pytest

pytest.importorskip("diffusers")

from runners import cli

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from video_dit_fixtures import make_cogvideox, make_ltx, make_wan, one_thread  # noqa: E402,F401

# (gin file, its required macro, tiny pipeline maker); the builders are registered with gin
# by runners/configurables.py
FAMILIES = {
    "cogvideox": ("backbones/external/cogvideox.gin", "COGVIDEOX_DIR", make_cogvideox),
    "wan": ("backbones/external/wan.gin", "WAN_DIR", make_wan),
    "ltx_video": ("backbones/external/ltx_video.gin", "LTX_DIR", make_ltx),
}


@pytest.fixture
def synthetic_cache(tmp_path_factory, monkeypatch):
    path = tmp_path_factory.mktemp("synthetic")
    monkeypatch.setenv("WALT_PROBE_SYNTHETIC_CACHE", str(path))
    return path


@pytest.mark.parametrize("family", list(FAMILIES))
def test_probe_through_the_cli(family, tmp_path, synthetic_cache):
    gin_file, macro, make = FAMILIES[family]
    root = make(tmp_path / family)
    out = tmp_path / "run"
    extra = ["--gin.build_wan.text_len=16"] if family == "wan" else []
    rc = cli.main(["probe", "--gin_file=experiments/smoke_tiny.gin", f"--gin_file={gin_file}",
                   f"--gin.{macro}='{root}'", f"--gin.Run.output_dir='{out}'", "--gin.STEPS=3",
                   "--gin.SyntheticMotionActions.num_train=8",
                   "--gin.SyntheticMotionActions.num_val=4", "--gin.Probe.batch_size=4",
                   "--gin.Probe.eval_batch_size=4", "--gin.BLOCK=2", "--gin.TIMESTEP=500", *extra])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["block"] == 2 and metrics["t"] == 500
    # the result carries the shared noise axis: native value, log-SNR, WALT-equivalent t
    noise = metrics["noise"]
    assert set(noise) == {"native", "log_snr", "walt_t"} and 0.0 < noise["walt_t"] < 999.0
    assert metrics["metric"] == "top1" and 0.0 <= metrics["value"] <= 1.0
