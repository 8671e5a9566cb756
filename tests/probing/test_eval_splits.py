"""One trained head, every held-out split: val selects, test reports (issue 17, section 2)."""

import dataclasses
import functools
import json

import pytest

from probing.probe import ConfigError, Probe, run
from probing.result import ProbeResult, ResultError


def _ok(tmp_path, **over) -> ProbeResult:
    fields = dict(status="ok", error=None, task="synthetic_motion", metric="top1",
                  higher_is_better=True, value=0.25, metrics={"top1": 0.25}, backbone="V-WALT-d256-L8",
                  family="walt", variant="video", size="small", fingerprint="abc", num_blocks=8,
                  block=4, block_spec=0.5, depth=0.5, t=0, noise=None, split="val", seed=1,
                  noise_seed=0, steps=60, final_loss=2.3, head_params=1234, feature_source="cache",
                  backbone_batches=0, compile_head=None, wall_s=1.5, extract_s=0.0, readout_s=1.2,
                  code="c0de", output_dir=str(tmp_path), bindings=[])
    return ProbeResult(**{**fields, **over})


def test_a_schema_2_result_reads_with_its_metrics_as_its_one_split(tmp_path):
    data = json.loads(_ok(tmp_path, split_metrics={"val": {"top1": 0.25}}).to_json())
    del data["split_metrics"]
    data["schema_version"] = 2
    r = ProbeResult.from_json(json.dumps(data), "v2.json")
    assert r.split_metrics == {"val": {"top1": 0.25}} and r.schema_version == 3
    assert r.value_on("val") == 0.25 and r.value_on("test") is None
    data["schema_version"] = 4
    with pytest.raises(ResultError, match="v2.json: schema_version 4"):
        ProbeResult.from_json(json.dumps(data), "v2.json")


def test_value_on_reads_the_headline_of_each_split(tmp_path):
    r = _ok(tmp_path, split_metrics={"val": {"top1": 0.25}, "test": {"top1": 0.5, "top5": 0.9}})
    assert (r.value_on("val"), r.value_on("test")) == (0.25, 0.5)
    assert ProbeResult.from_json(r.to_json()) == r


@pytest.fixture(scope="module")
def tiny():
    from backbones.build import build_backbone
    from readouts.optim import paper_optimizer
    from tasks.synthetic.builders import motion_task

    backbone = build_backbone(size="tiny", variant="video", tokenizer="tiny", image_size=32,
                              num_frames=5, seed=0, device="cpu")
    task = motion_task(num_train=8, num_val=4, image_size=32, num_frames=5,
                       head_kwargs={"width": 32, "num_heads": 2})
    opt = functools.partial(paper_optimizer, lr=3e-4, warmup=1, final_lr=1e-7, weight_decay=1e-4)
    return backbone, task, opt


@pytest.mark.parametrize("use_cache", [False, True])
def test_the_trained_head_is_scored_on_every_split_the_task_has(tiny, tmp_path, synthetic_cache, use_cache):
    backbone, task, opt = tiny
    # 'test' = the val items: the one trained head on the same items must give the same numbers
    # (a second head, or a head trained further, would not).
    splits = {**task.datasets, "test": task.datasets["val"]}
    with_test = dataclasses.replace(task, datasets=splits)
    probe = Probe(backbone=backbone, task=with_test, block=2, timestep=100, steps=3, batch_size=4,
                  eval_batch_size=4, optimizer=opt, use_cache=use_cache, cache_dir=str(tmp_path / "c"))
    r = run(probe, tmp_path / "run", seed=0)
    assert r.split == "val" and set(r.split_metrics) == {"val", "test"}
    assert r.split_metrics["test"] == r.split_metrics["val"] and r.value == r.value_on("val")
    if use_cache:  # the test split's features come from its own cache entry
        assert len(list((tmp_path / "c").rglob("manifest.json"))) == 3
    # A task without a test split is scored on val only (the report then falls back, and says so).
    without = {k: v for k, v in task.datasets.items() if k != "test"}
    r = run(dataclasses.replace(probe, task=dataclasses.replace(task, datasets=without)),
            tmp_path / "run2", seed=0)
    assert set(r.split_metrics) == {"val"}


def test_eval_splits_are_checked(tiny):
    backbone, task, _ = tiny
    for bad in ((), ("train",), ("val", "val")):
        with pytest.raises(ConfigError, match="Probe.eval_splits"):
            Probe(backbone=backbone, task=task, eval_splits=bad).validate()
