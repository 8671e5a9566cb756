"""`walt-probe probe` / `extract` through runners.cli.main: outputs, gin order, bad input, NaN, atomicity."""

import json
import os
import sys

import pytest
import torch

from probing import cache as feature_cache
from probing import extract
from runners import cli, gin_setup, trial

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from probe_fixtures import SMOKE, smoke_args  # noqa: E402


def _metrics(out):
    return json.loads((out / "metrics.json").read_text())


def test_probe_outputs_and_binding_order(tmp_path, synthetic_cache, capsys):
    out = tmp_path / "run"
    # The file sets BLOCK = 2; a later binding wins over an earlier one, and both over the file.
    rc = cli.main(["probe", *smoke_args(out, "--gin_bindings=BLOCK = 1", "--gin.Probe.block=3",
                                        "--gin.Probe.use_cache=True",
                                        f"--gin.Probe.cache_dir='{tmp_path / 'cache'}'")])
    assert rc == 0
    m = _metrics(out)
    assert m["status"] == "ok" and m["block"] == 3 and m["t"] == 100
    assert m["metric"] == "top1" and 0.0 <= m["value"] <= 1.0 and m["higher_is_better"] is True
    assert m["feature_source"] == "cache" and m["backbone_batches"] > 0
    operative = (out / "operative_config.gin").read_text()
    assert "Probe.block = 3" in operative and "PaperOptimizer.lr" in operative
    bindings = json.loads((out / "gin_args.json").read_text())["bindings"]
    assert bindings.index("BLOCK = 1") < bindings.index("Probe.block = 3")
    assert list((out / "tb").glob("events.out.tfevents.*"))
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("probe ")]
    assert len(line) == 1 and "top1 = " in line[0] and "higher is better" in line[0]


@pytest.mark.parametrize("binding,message", [
    ("--gin.Probe.blok=2", "Did you mean: block"),
    ("--gin.Probe.block=99", "block 99 does not exist"),
    ("--gin.Probe.block=1.5", "outside [0, 1]"),
    ("--gin.Probe.timestep=1000", "outside [0, 1000)"),
    ("--gin.Probe.task=None", "the probe has no task"),
])
def test_bad_input_is_named(tmp_path, synthetic_cache, capsys, binding, message):
    assert cli.main(["probe", *smoke_args(tmp_path / "run", binding)]) == 2
    assert message in capsys.readouterr().err
    # Errors found once the engine runs leave a 'failed' result naming them; earlier ones none.
    result = tmp_path / "run" / "metrics.json"
    assert not result.exists() or (_metrics(tmp_path / "run")["status"] == "failed"
                                   and message in _metrics(tmp_path / "run")["error"])


def test_nan_loss_stops_with_a_status_and_no_number(tmp_path, synthetic_cache, capsys):
    out = tmp_path / "run"
    assert cli.main(["probe", *smoke_args(out, "--gin.PaperOptimizer.lr=1e30", "--gin.STEPS=6")]) == 1
    m = _metrics(out)
    assert m["status"] == "diverged" and m["value"] is None and m["metrics"] == {}
    assert "loss became" in m["error"] and "DIVERGED" in capsys.readouterr().out


def _smoke_probe(tmp_path):
    gin_setup.parse(gin_setup.GinArgs(files=(str(gin_setup.DEFAULT_SEARCH_PATH / SMOKE),)),
                    ["SyntheticMotionActions.num_train = 8", "SyntheticMotionActions.num_val = 4"])
    return trial.build_probe()


def test_cached_features_equal_on_the_fly_features(tmp_path, synthetic_cache):
    probe = _smoke_probe(tmp_path)
    bb, task = probe.backbone, probe.task
    key = extract.cache_key(bb, task, "val", 300, [1, 3], dtype="float32")
    entry = extract.extract(bb, task, key, tmp_path, batch_size=3)
    assert entry.manifest["backbone_batches"] == 2  # one backbone pass per batch, all blocks
    (cached, items), = [next(entry.iter_batches(3, batch_size=4))]
    batch = torch.utils.data.default_collate([task.split("val")[i] for i in range(4)])
    live = bb.features(batch["video"], 300, [3], seeds=extract.noise_seeds(batch, 0))[3]
    assert torch.equal(items["index"], batch["index"])
    torch.testing.assert_close(cached, live)
    # Same key again: found, not recomputed; a different t is a different entry.
    assert extract.ensure_entry(bb, task, "val", 300, [3], tmp_path, "float32")[1] is False
    assert feature_cache.CacheEntry.find(tmp_path, extract.cache_key(bb, task, "val", 200, [3], "float32")) is None


def test_interrupted_extract_leaves_nothing(tmp_path, synthetic_cache):
    probe = _smoke_probe(tmp_path)

    class Dies:
        def __init__(self, inner):
            self.inner, self.calls = inner, 0
            self.fingerprint, self.num_blocks = inner.fingerprint, inner.num_blocks

        def features(self, *a, **k):
            self.calls += 1
            if self.calls == 2:
                raise KeyboardInterrupt  # what Ctrl-C does mid-extract
            return self.inner.features(*a, **k)

    bb = Dies(probe.backbone)
    key = extract.cache_key(bb, probe.task, "train", 0, [1])
    with pytest.raises(KeyboardInterrupt):
        extract.extract(bb, probe.task, key, tmp_path, batch_size=3, shard_size=3)
    assert list(tmp_path.iterdir()) == []
    assert feature_cache.CacheEntry.find(tmp_path, key) is None


def test_metrics_json_is_replaced_atomically(tmp_path, monkeypatch):
    trial.failed("first", tmp_path).write(tmp_path)

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        trial.failed("second", tmp_path).write(tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text())["error"] == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_extract_command(tmp_path, synthetic_cache, capsys):
    args = smoke_args(tmp_path / "run", f"--gin.Probe.cache_dir='{tmp_path / 'cache'}'")
    assert cli.main(["extract", *args, "--split", "val", "--blocks", "0,1,0.5"]) == 0
    out = capsys.readouterr().out
    assert "extracted" in out and "blocks=[0, 1, 2]" in out
    assert cli.main(["extract", *args, "--split", "val", "--blocks", "1"]) == 0
    assert "cached" in capsys.readouterr().out
    assert cli.main(["extract", *args, "--blocks", "x"]) == 2
    assert "neither an int nor a fraction" in capsys.readouterr().err
