"""Kept readouts (probing/kept.py): a probe keeps its head and predictions; `--eval_only`
re-evaluates the kept head without training and reproduces the run's metric exactly."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe_fixtures import smoke_args  # noqa: E402

from probing import kept  # noqa: E402
from runners import cli  # noqa: E402


def _metrics(folder):
    return json.loads((Path(folder) / "metrics.json").read_text())


@pytest.mark.parametrize("cache", [False, True], ids=["on-the-fly", "cache"])
def test_eval_only_reproduces_the_runs_metric_exactly(tmp_path, synthetic_cache, cache):
    run = tmp_path / "run"
    more = [f"--gin.Probe.use_cache={cache}", f"--gin.Probe.cache_dir='{tmp_path / 'cache'}'",
            "--gin.Run.device='cpu'", "--gin.STEPS=4"]
    assert cli.main(["probe", *smoke_args(run, *more)]) == 0
    for name in (kept.HEAD_WEIGHTS, kept.HEAD_CONFIG, kept.PREDICTIONS):
        assert (run / name).is_file(), name
    config = json.loads((run / kept.HEAD_CONFIG).read_text())
    trained = _metrics(run)
    assert config["value"] == trained["value"] and config["block"] == trained["block"] == 2
    assert config["head_params"] == trained["head_params"]

    assert cli.main(["probe", "--eval_only", "--head", str(run)]) == 0
    again = _metrics(run / "eval" / "val")
    assert again["metrics"] == trained["metrics"]  # exactly, every metric
    assert again["split"] == "val" and again["steps"] == trained["steps"]
    first, second = kept.read_predictions(run), kept.read_predictions(run / "eval" / "val")
    assert set(first) == {"index", "label", "pred_logits", "pred_label"} == set(second)
    assert len(first["index"]) == 4 and first["pred_logits"].shape == (4, 11)
    for k in first:
        np.testing.assert_array_equal(first[k], second[k])  # bit for bit


def test_a_kept_head_refuses_other_features(tmp_path, synthetic_cache, capsys):
    run = tmp_path / "run"
    assert cli.main(["probe", *smoke_args(run, "--gin.Run.device='cpu'")]) == 0
    assert cli.main(["probe", "--eval_only", "--head", str(run), "--gin.Probe.block=3"]) == 2
    assert "trained on other features (block: head 2 vs probe 3" in capsys.readouterr().err
    assert cli.main(["probe", "--eval_only", "--head", str(tmp_path)]) == 2
    assert "no operative_config.gin" in capsys.readouterr().err
    assert cli.main(["probe", "--eval_only", "--head", str(run), "--split", "nope"]) == 2
    assert "has no split 'nope'" in capsys.readouterr().err


def test_keep_head_off_keeps_nothing(tmp_path, synthetic_cache):
    run = tmp_path / "run"
    assert cli.main(["probe", *smoke_args(run, "--gin.Probe.keep_head=False",
                                          "--gin.Run.device='cpu'")]) == 0
    assert not any((run / n).exists() for n in (kept.HEAD_WEIGHTS, kept.HEAD_CONFIG, kept.PREDICTIONS))
    with pytest.raises(kept.KeptHeadError, match="keep_head = True"):
        kept.read_config(run)


def test_predictions_keep_per_example_rows_and_shared_pixel_indices(tmp_path):
    import torch

    keep = kept.Predictions()
    for start in (0, 4):  # a depth head's rows / cols have the batch's length here, on purpose
        batch = {"index": torch.arange(start, start + 4), "depth": torch.rand(4, 2, 4, 4)}
        keep.update({"depth": torch.rand(4, 2, 4, 4), "rows": torch.arange(4), "cols": torch.arange(4)},
                    batch)
    keep.write(tmp_path)
    got = kept.read_predictions(tmp_path)
    assert got["pred_depth"].shape == (8, 2, 4, 4) and got["depth"].shape == (8, 2, 4, 4)
    assert got["pred_rows"].tolist() == [0, 1, 2, 3] and got["index"].tolist() == list(range(8))
