"""Same seed -> identical bytes; different seeds -> different clips; independent of batch
size and of the number of render processes; the render device is resolved and recorded."""

import numpy as np
import pytest
import torch

from tasks.synthetic import analogs
from tasks.synthetic.dataset import clip_generator


def _items(name, seeds, size=32, frames=5):
    gens = [clip_generator(name, "train", 0, s) for s in seeds]
    return analogs.render_items(analogs.get(name), gens, size, frames)


@pytest.mark.parametrize("name", ["objects", "motion", "point_tracks", "box_tracks", "pose", "depth"])
def test_same_seed_same_bytes_in_any_batch(name):
    alone = _items(name, [3])[0]
    batched = _items(name, [7, 3, 5])[1]
    again = _items(name, [3])[0]
    for key in alone:
        assert alone[key].tobytes() == again[key].tobytes(), key
        assert alone[key].tobytes() == batched[key].tobytes(), key


def test_different_seeds_differ():
    a, b = _items("depth", [1, 2])
    assert not np.array_equal(a["video"], b["video"])
    g1, g2 = clip_generator("x", "train", 0, 1), clip_generator("x", "train", 1, 1)
    assert not torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))


def test_dataset_cache_roundtrip_and_task(tmp_path):
    from tasks.synthetic import builders
    from tasks.synthetic.dataset import cache_key
    task = builders.point_tracks_task(cache_dir=str(tmp_path), num_train=3, num_val=2, image_size=32)
    item = task.datasets["train"][1]
    assert item["video"].shape == (17, 32, 32, 3) and item["video"].dtype == torch.uint8
    assert item["query_points"].shape == (64, 3) and item["occluded"].dtype == torch.bool
    assert int(item["index"]) == 1 and len(task.datasets["val"]) == 2
    again = builders.point_tracks_task(cache_dir=str(tmp_path), num_train=3, num_val=2, image_size=32)
    assert torch.equal(again.datasets["train"][1]["target_points"], item["target_points"])
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 1  # reloaded, not re-rendered
    assert cache_key({"seed": 0}) != cache_key({"seed": 1})


def test_every_gin_file_parses_and_binds_a_task():
    import glob
    import gin
    import runners.configurables  # noqa: F401
    files = sorted(glob.glob("gin/tasks/synthetic/*.gin"))
    assert len(files) == 10
    for path in files:
        gin.clear_config()
        gin.parse_config_file(path)
        assert gin.query_parameter("%TASK") is not None
    gin.clear_config()


def test_split_bytes_do_not_depend_on_processes_and_device_is_recorded(tmp_path):
    import json
    from tasks.synthetic import builders
    one = builders.analog_datasets("depth", cache_dir=str(tmp_path / "a"), num_train=6, num_val=0,
                                   image_size=32, num_frames=5, num_proc=1)
    two = builders.analog_datasets("depth", cache_dir=str(tmp_path / "b"), num_train=6, num_val=0,
                                   image_size=32, num_frames=5, num_proc=2)
    for i in range(6):
        for key in ("video", "depth"):
            assert torch.equal(one["train"][i][key], two["train"][i][key]), (i, key)
    (folder,) = [p for p in (tmp_path / "a").iterdir() if not p.name.startswith(".")]
    assert json.loads((folder / "walt_probe_params.json").read_text())["device"] == "cpu"


def test_num_proc_and_device_resolution():
    from tasks.synthetic.dataset import (MIN_CLIPS_PER_PROC, resolve_device, resolve_num_proc,
                                         usable_cores)
    assert resolve_num_proc(None, 10, "cpu") == 1
    assert resolve_num_proc(None, 100 * MIN_CLIPS_PER_PROC, "cpu") == usable_cores()
    assert resolve_num_proc(3, 10, "cpu") == 3 and resolve_num_proc(None, 10**6, "cuda") == 1
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="render device"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="num_proc"):
        resolve_num_proc(0, 10, "cpu")


@pytest.mark.gpu
def test_gpu_render_matches_cpu_render():
    from tasks.synthetic import render, world
    scenes = [world.random_scene(torch.Generator().manual_seed(s), 5, 64) for s in range(4)]
    cpu, gpu = render.render(scenes, 64), render.render(scenes, 64, device="cuda")
    assert (cpu["ids"] == gpu["ids"]).float().mean() > 0.995
    same = cpu["ids"] == gpu["ids"]
    assert torch.allclose(cpu["depth"][same], gpu["depth"][same], rtol=1e-3)
    assert (cpu["video"].int() - gpu["video"].int()).abs().float().mean() < 1.0
    gens = [clip_generator("point_tracks", "train", 0, i) for i in range(2)]
    items = analogs.render_items(analogs.get("point_tracks"), gens, 32, 5, device="cuda")
    assert items[0]["target_points"].shape == (analogs.NUM_QUERIES, 5, 2)


def _count_renders(marks: str):
    """make_render_chunk for cached_dataset_dict that leaves one file per split it renders."""
    import os
    from tasks.synthetic import analogs
    from tasks.synthetic.dataset import clip_generator

    def make(split, device):
        open(os.path.join(marks, f"{split}-{os.getpid()}"), "w").close()
        def render_chunk(indices):
            gens = [clip_generator("depth", split, 0, i) for i in indices]
            return analogs.render_items(analogs.get("depth"), gens, 16, 3)
        return render_chunk
    return make


def _load(cache_dir, marks, out):
    from tasks.synthetic.dataset import cached_dataset_dict
    ds = cached_dataset_dict("depth", {"seed": 0}, {"train": 8, "val": 0}, _count_renders(marks),
                             cache_dir=cache_dir, num_proc=1)
    out.put(len(ds["train"]))


def test_concurrent_requests_render_a_split_once(tmp_path):
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    marks = tmp_path / "marks"
    marks.mkdir()
    out = ctx.Queue()
    procs = [ctx.Process(target=_load, args=(str(tmp_path / "cache"), str(marks), out)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert sorted(out.get(timeout=5) for _ in procs) == [8, 8, 8]
    assert len(list(marks.iterdir())) == 1                 # one process rendered; two waited and loaded
