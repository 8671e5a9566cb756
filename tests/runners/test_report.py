"""`walt-probe report` on synthetic result folders: tidy CSV, failures as failures, every plot."""

import json

import pandas as pd
import pytest

from runners import cli, report


def _trial(root, name, bindings, **metrics):
    d = root / "trials" / name
    d.mkdir(parents=True)
    (d / "trial.json").write_text(json.dumps({"bindings": bindings}))
    if metrics:
        (d / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture
def experiment(tmp_path):
    exp = tmp_path / "exp"
    for task, metric, hib in [("motion", "top1", True), ("depth", "abs_rel", False)]:
        for variant in ("image", "video"):
            for block in (1, 2):
                for t in (0, 500):
                    good = 0.5 + 0.1 * block - t / 5000 + (0.1 if variant == "video" else 0)
                    value = good if hib else 1.5 - good
                    b = [f"Probe.block = {block}", f"Probe.timestep = {t}", f"Backbone.variant = '{variant}'",
                         f"TASK = @{task}()"]
                    name = f"{task}-{variant}-{block}-{t}"
                    if (task, variant, block, t) == ("motion", "video", 2, 500):
                        _trial(exp, name, b, status="error", error="GinError: unknown configurable", value=None)
                    elif (task, variant, block, t) == ("depth", "image", 1, 0):
                        _trial(exp, name, b, status="diverged", error="loss became nan at step 3", value=None,
                               task=task, metric=metric, higher_is_better=hib, variant=variant, size="tiny",
                               block=block, timestep=t)
                    else:
                        _trial(exp, name, b, status="ok", error=None, value=value, task=task, metric=metric,
                               higher_is_better=hib, variant=variant, size="tiny", block=block, block_spec=block,
                               num_blocks=4, timestep=t, backbone="walt")
    _trial(exp, "motion-image-9-0", ["Probe.block = 9", "Probe.timestep = 0", "Backbone.variant = 'image'",
                                     "TASK = @motion()"])  # started, never finished
    return exp


def test_csv_rows_statuses_and_values(experiment, tmp_path, capsys):
    assert cli.main(["report", str(experiment), "--out", str(tmp_path / "out")]) == 0
    df = pd.read_csv(tmp_path / "out" / "results.csv")
    assert len(df) == 17 and set(report.COLUMNS) <= set(df.columns)
    by = df.set_index("trial")
    err = by.loc["motion-video-2-500"]
    assert err.status == "error" and pd.isna(err.value) and "unknown configurable" in err.error
    assert err.task == "motion" and err.block == 2 and err.t == 500 and err.model == "V-WALT tiny"
    assert by.loc["depth-image-1-0"].status == "diverged" and pd.isna(by.loc["depth-image-1-0"].value)
    assert by.loc["motion-image-9-0"].status == "incomplete"
    assert (df[df.status == "ok"].value.notna()).all()
    assert "17 trials" in capsys.readouterr().out


def test_every_figure_and_summary(experiment, tmp_path):
    paths = report.write_report([experiment], tmp_path / "out")
    for name in ("fig1_relative_change", "fig7_relative_to_iwalt", "fig5_motion", "fig5_depth",
                 "heatmap_motion_I-WALT tiny", "heatmap_motion_V-WALT tiny", "heatmap_depth_I-WALT tiny"):
        assert paths[name] and (tmp_path / "out" / paths[name].split("/")[-1]).stat().st_size > 10_000
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| motion | tiny |" in summary and "unknown configurable" in summary and "diverged" in summary


def test_relative_change_flips_lower_is_better():
    assert report.relative_change(0.6, 0.5, True) == pytest.approx(20.0)
    assert report.relative_change(0.4, 0.5, False) == pytest.approx(20.0)  # lower error = better
    assert report.relative_change(0.6, 0.5, False) == pytest.approx(-20.0)


def test_best_rows_follow_the_metric_direction(experiment):
    best = report.best_rows(report.collect([experiment])).set_index(["task", "model"])
    assert best.loc[("motion", "V-WALT tiny")].value == pytest.approx(0.5 + 0.2 + 0.1)
    assert best.loc[("depth", "I-WALT tiny")].value == pytest.approx(1.5 - 0.7)


def test_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path / "nope")]) == 2
    assert "no such experiment folder" in capsys.readouterr().err
