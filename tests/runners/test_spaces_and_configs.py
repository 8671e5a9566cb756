"""Search spaces map gin bindings to tune specs; every gin/experiments file parses."""

from pathlib import Path

import gin
import pytest

import search_spaces
from runners import gin_setup, sweep

EXPERIMENTS = sorted(p for p in (gin_setup.DEFAULT_SEARCH_PATH / "experiments").rglob("*.gin")
                     if not p.name.startswith("pretrain"))


# Files meant to be included after a backbone and a task file (they say so in their header).
INCLUDED = {"probe_base.gin": ("backbones/tiny.gin", "tasks/synthetic/motion_ssv2.gin"),
            "cpu_heads.gin": (), "grid_base.gin": ("tasks/synthetic/motion_ssv2.gin",)}


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_every_experiment_file_parses(path):
    before = tuple(str(gin_setup.DEFAULT_SEARCH_PATH / f) for f in INCLUDED.get(path.name, ()))
    gin_setup.parse(gin_setup.GinArgs(files=(*before, str(path))))  # raises GinError if broken
    assert gin.config_str().strip(), f"{path.name} binds nothing"


@pytest.mark.parametrize("path", [p for p in EXPERIMENTS if p.name.startswith(("sweep", "quickstart", "grid_", "cells_"))
                          and not p.name.endswith("_base.gin")],
                         ids=lambda p: p.name)
def test_sweep_files_define_a_space_with_valid_bindings(path):
    gin_setup.parse(gin_setup.GinArgs(files=(str(path),)))
    space = sweep.merge_spaces(gin.get_configurable("Sweep")().space)
    points = sweep.expand_grid(space)
    assert points
    # Every grid point's bindings parse on top of the file (names and macros exist).
    gin_setup.parse(gin_setup.GinArgs(files=(str(path),)), sweep.to_bindings(points[-1]))


def test_quickstart_is_the_promised_grid():
    path = gin_setup.DEFAULT_SEARCH_PATH / "experiments" / "quickstart.gin"
    gin_setup.parse(gin_setup.GinArgs(files=(str(path),)))
    space = sweep.merge_spaces(gin.get_configurable("Sweep")().space)
    points = sweep.expand_grid(space)
    assert len(points) == 2 * 3 * 3 * 3
    assert len(sweep.cache_groups(space)) == 2 * 3 * 3  # one cache per variant x t x task


def _grid(name):
    gin_setup.parse(gin_setup.GinArgs(files=(str(gin_setup.DEFAULT_SEARCH_PATH / "experiments" / name),)))
    return sweep.merge_spaces(gin.get_configurable("Sweep")().space)


@pytest.mark.parametrize("task", ["objects", "motion", "depth", "point_tracks"])
def test_mini_study_grid_is_the_promised_grid(task):
    # Every other block of 8 plus block 0 and the last, x the five timesteps, x I / V.
    space = _grid(f"mini_study/grid_{task}.gin")
    assert space["Probe.block"]["grid_search"] == [0, 2, 4, 6, 8]
    assert space["Probe.timestep"]["grid_search"] == [0, 100, 200, 500, 900]
    assert len(sweep.expand_grid(space)) == 5 * 5 * 2
    assert len(sweep.cache_groups(space)) == 5 * 2  # one backbone pass per t and model


def test_mini_study_cells_repeat_seeds_without_extra_passes():
    space = _grid("mini_study/cells_paper.gin")
    assert space["Run.seed"]["grid_search"] == [0, 1]
    assert len(sweep.expand_grid(space)) == 10 * 2 * 2
    assert len(sweep.cache_groups(space)) == 10 * 2  # the seed is readout-only


def test_spaces():
    s = search_spaces.block_x_timestep(num_blocks=3, timesteps=(0, 200), variants=("image", "video"))
    assert s["Probe.block"]["grid_search"] == [0, 1, 2, 3]
    assert s["Backbone.variant"]["grid_search"] == ["image", "video"]
    assert search_spaces.block_x_timestep()["Probe.timestep"]["grid_search"] == list(search_spaces.PAPER_TIMESTEPS)
    with pytest.raises(ValueError, match="outside"):
        search_spaces.block_x_timestep(timesteps=(1000,))
    v = search_spaces.variants(tasks=("@SyntheticObjects()",))
    assert v["TASK"]["grid_search"] == ["@SyntheticObjects()"]
    assert search_spaces.seeds((3, 4)) == {"Run.seed": {"grid_search": [3, 4]}}
    with pytest.raises(ValueError, match="distinct"):
        search_spaces.seeds((1, 1))
    with pytest.raises(ValueError, match="gin references"):
        search_spaces.variants(tasks=("objects",))
    sc = search_spaces.scaling(sizes=("284m",), checkpoints={"284m/video": "/c.safetensors"})
    bundles = sc["model"]["grid_search"]
    assert bundles[1] == {"Backbone.size": "284m", "Backbone.variant": "video",
                          "Backbone.walt_checkpoint": "/c.safetensors"}
    with pytest.raises(ValueError, match="does not contain"):
        search_spaces.scaling(sizes=("284m",), checkpoints={"1p9b/video": "x"})
    b = search_spaces.backbones()["backbone"]["grid_search"]
    assert [m["__name__"] for m in b] == ["I-WALT", "V-WALT"]
    assert sweep.to_bindings({"backbone": b[0]}) == ["Backbone.variant = 'image'"]


def test_backbone_grids_give_each_model_its_own_block_x_noise_grid():
    space = _grid("sweep_backbones.gin")
    points = sweep.expand_grid(space)
    cells, cache_blocks = {}, {}
    for p in points:
        bundle = p["backbone"]
        model = bundle["Probe.backbone"] + bundle.get("Backbone.variant", "")
        cells.setdefault(model, set()).add((bundle["Probe.block"], bundle["Probe.timestep"]))
        cache_blocks.setdefault(model, set()).add(tuple(bundle["Probe.cache_blocks"]))
    # One extraction per (model, t) serves every block of that model: each grid point of a model
    # asks the cache for all of that model's blocks.
    assert all(len(v) == 1 and set(next(iter(v))) == {b for b, _ in cells[m]} for m, v in cache_blocks.items())
    assert cells["@build_dinov2()"] == {(f, 0) for f in (0.25, 0.5, 0.75, 1.0)}
    assert cells["@build_cogvideox()"] == {(b, t) for b in (8, 15, 22, 30) for t in (0, 200, 500)}
    assert cells["@Backbone()image"] == {(b, t) for b in (2, 4, 6, 8) for t in (0, 200, 500)}
    assert len(points) == (2 * 12 + 4 * 12 + 4) * 2  # two readout seeds
    # Trial folders stay apart: every grid point has its own name.
    names = [p["backbone"]["__name__"] for p in points]
    assert len(set(names)) == len(names) // 2
    with pytest.raises(ValueError, match="has no timesteps"):
        search_spaces.backbone_grids({"X": {"bindings": {"Probe.backbone": "@x()"}, "blocks": [1]}})
