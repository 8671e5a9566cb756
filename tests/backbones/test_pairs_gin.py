"""The pair gin files parse, the presets are Fig. 1's sweep shape (2 arms x 10 tasks), and a
preset's image arm builds from its gin binding on a tiny saved pipeline.

The builders are registered with gin under their own names by runners/configurables.py.
"""

import sys
from pathlib import Path

import gin
import pytest

sys.path.insert(0, str(Path(__file__).parent))

pytest.importorskip("diffusers")

from runners import gin_setup, sweep  # noqa: E402

import runners.configurables  # noqa: E402,F401  (registers the project's names)

GIN = gin_setup.DEFAULT_SEARCH_PATH
PRESETS = {"pair_pixart_latte.gin": ("PixArt-alpha", "Latte"),
           "pair_sd15_animatediff.gin": ("SD1.5", "AnimateDiff")}


@pytest.mark.parametrize("name", ["pixart_alpha", "latte", "sd15", "animatediff"])
def test_external_backbone_files_parse_with_required_weights(name):
    path = GIN / "backbones" / "external" / f"{name}.gin"
    text = path.read_text()
    assert "%gin.REQUIRED" in text and "walt-probe probe" in text
    gin_setup.parse(gin_setup.GinArgs(files=(str(GIN / "experiments" / "probe_base.gin"), str(path))),
                    finalize=False)
    # the weights path is the REQUIRED macro (a reference until a command sets it)
    assert "gin.macro" in str(gin.query_parameter(f"build_{name}.path").selector)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_are_fig1_sweeps_of_two_arms(preset):
    path = GIN / "experiments" / preset
    gin_setup.parse(gin_setup.GinArgs(files=(str(path),)))
    points = sweep.expand_grid(sweep.merge_spaces(gin.get_configurable("Sweep")().space))
    assert len(points) == 2 * 10
    arms = {p["backbone"]["__name__"]: p["backbone"]["Probe.backbone"] for p in points}
    assert tuple(arms) == PRESETS[preset]
    # every grid point's bindings parse on top of the file (names and macros exist)
    for point in (points[0], points[-1]):
        gin_setup.parse(gin_setup.GinArgs(files=(str(path),)), sweep.to_bindings(point))


def test_preset_image_arm_builds_from_gin(tmp_path):
    from pairs_fixtures import save_pixart_latte

    pixart_dir, latte_dir = save_pixart_latte(tmp_path)
    gin_setup.parse(gin_setup.GinArgs(files=(str(GIN / "experiments" / "pair_pixart_latte.gin"),)),
                    [f"PIXART_DIR = '{pixart_dir}'", f"LATTE_DIR = '{latte_dir}'",
                     "build_pixart_alpha.device = 'cpu'", "build_latte.device = 'cpu'"])
    # gin supplies path, device and first_frames
    image, video = (gin.get_configurable(n)() for n in ("build_pixart_alpha", "build_latte"))
    assert (image.variant, video.variant) == ("image", "video")
    assert image.first_frames == video.first_frames == 16
    gin.clear_config()


@pytest.mark.parametrize("family", ["pixart-latte", "sd15-animatediff"])
def test_video_arm_probes_through_the_real_cli(family, tmp_path, monkeypatch):
    """`walt-probe probe` on the smoke task (5-frame 32 x 32 clips) with the pair's video arm
    (the image arm shares every code path but the frame handling, tested in test_*.py)."""
    import json

    from pairs_fixtures import save_pixart_latte, save_sd15_motion

    from runners import cli

    monkeypatch.setenv("WALT_PROBE_SYNTHETIC_CACHE", str(tmp_path / "synthetic"))
    if family == "pixart-latte":
        latte_dir = save_pixart_latte(tmp_path)[1]
        backbone = ["--gin.Probe.backbone=@build_latte()", f"--gin.build_latte.path='{latte_dir}'",
                    "--gin.build_latte.first_frames=4"]
        arm = "build_latte"
    else:
        sd_dir, motion_dir = save_sd15_motion(tmp_path)
        backbone = ["--gin.Probe.backbone=@build_animatediff()",
                    f"--gin.build_animatediff.path='{sd_dir}'",
                    f"--gin.build_animatediff.motion_adapter_path='{motion_dir}'",
                    "--gin.build_animatediff.num_frames=4",
                    "--gin.build_animatediff.feature_block=%BLOCK"]
        arm = "build_animatediff"
    out = tmp_path / "run"
    rc = cli.main(["probe", "--gin_file=experiments/smoke_tiny.gin", f"--gin.Run.output_dir='{out}'",
                   "--gin.STEPS=3", "--gin.SyntheticMotionActions.num_train=8",
                   "--gin.SyntheticMotionActions.num_val=4", "--gin.Probe.batch_size=4",
                   "--gin.Probe.eval_batch_size=4", f"--gin.{arm}.device='cpu'", *backbone])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "ok" and 0.0 <= metrics["value"] <= 1.0
