"""`walt-probe report` on synthetic result folders: tidy CSV, failures as failures, every plot."""

import json

import pandas as pd
import pytest

from probing.result import ProbeResult, failed
from runners import cli, report


def _result(d, bindings, status, **fields) -> ProbeResult:
    """A ProbeResult as the engine writes it (tiny WALT, 4 blocks)."""
    if status == "failed":
        return failed(fields.pop("error"), d, bindings=bindings, **fields)
    base = dict(status=status, error=None, value=None, metrics={}, backbone="walt", family="walt",
                size="tiny", fingerprint="fp", num_blocks=4, depth=None, noise=None, split="val",
                seed=0, noise_seed=0, steps=3, final_loss=0.1, head_params=10,
                feature_source="cache", backbone_batches=1, compile_head=None, wall_s=1.0,
                extract_s=0.0, readout_s=1.0, code="c", output_dir=str(d), bindings=bindings)
    base.update(fields)
    base["depth"] = base["block"] / 4
    base.setdefault("block_spec", base["block"])
    if base["value"] is not None:
        base["metrics"] = {base["metric"]: base["value"]}
    return ProbeResult(**base)


def _trial(root, name, bindings, status=None, **fields):
    d = root / "trials" / name
    d.mkdir(parents=True)
    (d / "trial.json").write_text(json.dumps({"bindings": bindings}))
    if status is not None:
        _result(d, bindings, status, **fields).write(d)


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
                        _trial(exp, name, b, status="failed", error="GinError: unknown configurable",
                               block_spec=block, t=t)
                    elif (task, variant, block, t) == ("depth", "image", 1, 0):
                        _trial(exp, name, b, status="diverged", error="loss became nan at step 3",
                               task=task, metric=metric, higher_is_better=hib, variant=variant,
                               block=block, t=t)
                    else:
                        _trial(exp, name, b, status="ok", value=value, task=task, metric=metric,
                               higher_is_better=hib, variant=variant, block=block, t=t)
    _trial(exp, "motion-image-9-0", ["Probe.block = 9", "Probe.timestep = 0", "Backbone.variant = 'image'",
                                     "TASK = @motion()"])  # started, never finished
    return exp


def test_csv_rows_statuses_and_values(experiment, tmp_path, capsys):
    assert cli.main(["report", str(experiment), "--out", str(tmp_path / "out")]) == 0
    df = pd.read_csv(tmp_path / "out" / "results.csv")
    assert len(df) == 17 and set(report.COLUMNS) <= set(df.columns)
    by = df.set_index("trial")
    err = by.loc["motion-video-2-500"]
    assert err.status == "failed" and pd.isna(err.value) and "unknown configurable" in err.error
    # A failed trial shows what it knew (its own bindings), never a sibling's task or size.
    assert pd.isna(err.task) and err.block_spec == 2 and err.t == 500 and err.model == "V-WALT"
    assert by.loc["depth-image-1-0"].status == "diverged" and pd.isna(by.loc["depth-image-1-0"].value)
    assert by.loc["motion-image-9-0"].status == "incomplete"
    assert (df[df.status == "ok"].value.notna()).all()
    assert "17 trials" in capsys.readouterr().out


def _drawn(path) -> pd.DataFrame:
    """What a figure's artists draw (the CSV plots._save writes beside each PNG)."""
    return pd.read_csv(str(path).replace(".png", ".csv"))


def test_every_figure_draws_the_tables_values(experiment, tmp_path):
    paths = report.write_report([experiment], tmp_path / "out")
    df = pd.read_csv(paths["csv"])
    ok = df[df.status == "ok"]
    # Fig. 5, noise panel: each model's line at its best block (2) carries that block's values.
    drawn = _drawn(paths["fig5_motion"])
    panel = drawn[(drawn.panel == 0) & (drawn.kind == "errorbar")]
    for variant, model in (("image", "I-WALT tiny"), ("video", "V-WALT tiny")):
        line = panel[panel.label.str.startswith(model)].sort_values("x")
        want = ok[(ok.task == "motion") & (ok.variant == variant) & (ok.block == 2)].sort_values("t")
        assert list(line.x) == list(want.t.astype(float)) and list(line.y) == pytest.approx(list(want.value))
    # Fig. 1: one bar per task, the relative change of the best cells (V 0.8 vs I 0.7 on motion).
    bars = _drawn(paths["fig1_relative_change"]).query("kind == 'bar'")
    assert sorted(bars.tick.str.split("\n").str[0]) == ["depth", "motion"]
    motion = bars[bars.tick.str.startswith("motion")].y.iloc[0]
    assert motion == pytest.approx(report.relative_change(0.8, 0.7, True))
    # Fig. 7: V-WALT relative to the reference I-WALT, depth inverted (lower is better).
    fig7 = _drawn(paths["fig7_relative_to_iwalt"]).query("kind == 'errorbar'")
    depth = fig7[fig7.tick.str.startswith("depth")].y.iloc[0]
    assert depth == pytest.approx(100 + report.relative_change(0.7, 0.8, False))
    # Heatmaps: the best cell is where the table's best value is (value text on the image).
    assert paths["heatmap_motion_I-WALT tiny"] and paths["heatmap_depth_I-WALT tiny"]
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| motion | tiny | 0.7 (1 seed) | 0.8 (1 seed) | +14.3% |" in summary
    assert "unknown configurable" in summary and "diverged" in summary


def test_relative_change_flips_lower_is_better():
    assert report.relative_change(0.6, 0.5, True) == pytest.approx(20.0)
    assert report.relative_change(0.4, 0.5, False) == pytest.approx(20.0)  # lower error = better
    assert report.relative_change(0.6, 0.5, False) == pytest.approx(-20.0)


def test_best_rows_follow_the_metric_direction(experiment):
    best = report.best_rows(report.collect([experiment])).set_index(["task", "model"])
    assert best.loc[("motion", "V-WALT tiny")].value == pytest.approx(0.5 + 0.2 + 0.1)
    assert best.loc[("depth", "I-WALT tiny")].value == pytest.approx(1.5 - 0.7)


@pytest.mark.parametrize("corrupt, message", [
    (lambda d: d.pop("higher_is_better"), "missing field 'higher_is_better'"),
    (None, "not JSON"),
])
def test_an_unreadable_result_is_listed_by_path_and_the_report_goes_on(experiment, tmp_path, capsys,
                                                                       corrupt, message):
    path = experiment / "trials" / "motion-image-1-0" / "metrics.json"
    if corrupt is None:
        path.write_bytes(b"\0" * 64)
    else:
        data = json.loads(path.read_text())
        corrupt(data)
        path.write_text(json.dumps(data))
    assert cli.main(["report", str(experiment), "--out", str(tmp_path / "out")]) == 0
    assert "1 unreadable" in capsys.readouterr().out
    summary = (tmp_path / "out" / "summary.md").read_text()
    section = summary.split("## Unreadable result files")[1].split("##")[0]
    assert f"`{path}`" in section and message in section
    df = pd.read_csv(tmp_path / "out" / "results.csv")
    assert (df.status == "unreadable").sum() == 1 and (df.status == "ok").sum() == 13
    # The unreadable trial's task still comes from its own bindings, never from a sibling.
    assert df[df.status == "unreadable"].block_spec.iloc[0] == 1


def test_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path / "nope")]) == 2
    assert "no such experiment folder" in capsys.readouterr().err


# ---- --baselines: the trivial predictor of `walt-probe baseline` ------------------------------

def _baseline(folder, task, metric, hib, value, predictor="input-free"):
    folder.mkdir(exist_ok=True)
    record = {"task": task, "metric": metric, "higher_is_better": hib, "value": value,
              "metrics": {metric: value}, "predictor": predictor, "num_train": 8, "num_val": 4}
    (folder / f"{task}.json").write_text(json.dumps(record))


@pytest.fixture
def baselines(tmp_path):
    # Best probes: motion (top1) I 0.7, V 0.8; depth (abs_rel) I 0.8, V 0.7 (see `experiment`).
    folder = tmp_path / "baselines"
    _baseline(folder, "motion", "top1", True, 0.75, "majority class 3 of train")
    _baseline(folder, "depth", "abs_rel", False, 0.75, "per-pixel median depth")
    _baseline(folder, "objects", "top1", True, 0.1)   # a task without trials: ignored
    return folder


@pytest.mark.parametrize("value, trivial, hib, verdict", [
    (0.8, 0.75, True, "yes"), (0.7, 0.75, True, "no"), (0.7, 0.75, False, "yes"),
    (0.8, 0.75, False, "no"), (0.75, 0.75, True, "tie"), (float("nan"), 0.75, True, "n/a")])
def test_beats_trivial_follows_the_metric_direction(value, trivial, hib, verdict):
    assert report.beats_trivial(value, trivial, hib) == verdict


def test_summary_says_whether_each_best_probe_beats_the_trivial_predictor(experiment, baselines, tmp_path):
    assert cli.main(["report", str(experiment), "--out", str(tmp_path / "out"),
                     "--baselines", str(baselines)]) == 0
    summary = (tmp_path / "out" / "summary.md").read_text()
    # The trivial predictor is a row of the study table.
    assert "| depth | trivial predictor | - | - | - | - | 0.75 val | - | - |" in summary
    assert "| depth | V-WALT tiny | 2 | 0 | - | 0.7 | 0.7 (1 seed) val | - | gain (1 seed, spread unknown) |" in summary
    for row in ("| depth | I-WALT tiny | 0.8 | 0.75 | no (+0.05) |", "| depth | V-WALT tiny | 0.7 | 0.75 | yes (-0.05) |",
                "| motion | I-WALT tiny | 0.7 | 0.75 | no (-0.05) |", "| motion | V-WALT tiny | 0.8 | 0.75 | yes (+0.05) |"):
        assert row in summary
    assert "- motion: majority class 3 of train (train 8, val 4 items)" in summary
    assert "objects" not in summary


def test_without_baselines_the_summary_has_no_trivial_column(experiment, tmp_path):
    report.write_report([experiment], tmp_path / "out")
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "trivial" not in summary and "| depth | I-WALT tiny | 2 | 0 |" in summary


def test_a_baseline_of_another_metric_is_not_compared(experiment, tmp_path):
    folder = tmp_path / "baselines"
    _baseline(folder, "depth", "rmse", False, 0.5)
    summary_path = report.write_report([experiment], tmp_path / "out", folder)["summary"]
    summary = open(summary_path).read()
    assert "depth: the baseline scores rmse, the probes abs_rel" in summary
    assert "motion: no baseline file" in summary and "| depth | I-WALT tiny | 0.8 |" not in summary
    assert "| depth | trivial predictor |" not in summary


def test_plots_draw_the_trivial_value(experiment, baselines, tmp_path, monkeypatch):
    from runners import plots

    drawn = {}

    def record(fig, path):
        drawn[path.name] = ([[(ln.get_linestyle(), tuple(ln.get_ydata())) for ln in ax.get_lines()]
                             for ax in fig.axes], [ax.get_title() for ax in fig.axes])
        return original(fig, path)

    original = plots._save
    monkeypatch.setattr(plots, "_save", record)
    report.write_report([experiment], tmp_path / "out", baselines)
    lines, _ = drawn["fig5_depth.png"]
    assert all(("--", (0.75, 0.75)) in panel for panel in lines)   # both panels: t and block
    titles = " ".join(drawn["heatmap_depth_I-WALT_tiny.png"][1])
    assert "trivial predictor: 0.75 (NOT beaten by any cell)" in titles
    assert "trivial predictor: 0.75 (beaten by the best cell)" in " ".join(drawn["heatmap_depth_V-WALT_tiny.png"][1])


@pytest.mark.parametrize("make, message", [
    (lambda d: None, "no such baselines folder"),
    (lambda d: d.mkdir(), "no baseline files"),
    (lambda d: (d.mkdir(), (d / "x.json").write_text('{"task": "motion"}')), "is not a baseline file"),
    (lambda d: (d.mkdir(), (d / "x.json").write_text("{oops")), "is not JSON"),
])
def test_bad_baselines_folder_is_a_clear_error(experiment, tmp_path, capsys, make, message):
    make(tmp_path / "b")
    assert cli.main(["report", str(experiment), "--out", str(tmp_path / "out"),
                     "--baselines", str(tmp_path / "b")]) == 2
    assert message in capsys.readouterr().err


def test_best_cell_averages_readout_seeds():
    # Cell A: seeds 0.9 and 0.1 (mean 0.5); cell B: 0.6 and 0.6. The best cell is B, not the
    # lucky seed of A, and its value is the mean.
    rows = [dict(task="t", model="V-WALT small", block=b, t=0, value=v, higher_is_better=True,
                 status="ok") for b, v in ((1, 0.9), (1, 0.1), (2, 0.6), (2, 0.6))]
    best = report.best_rows(pd.DataFrame(rows))
    assert list(best.block) == [2] and list(best.value) == [pytest.approx(0.6)]


def _family_cells():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "results" / "mini_study" / "family_cells.py"
    spec = importlib.util.spec_from_file_location("family_cells", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_family_cells_pick_each_models_best_cell_and_refuse_an_incomplete_grid(experiment, tmp_path):
    family_cells = _family_cells()
    df = report.collect([experiment])
    # The fixture's value grows with the block and falls with t: block 2, t 0 wins for both models
    # (for depth, lower is better and the value is mirrored); video is 0.1 better.
    assert family_cells.best_cells(df, "motion") == {"image": (2, 0, pytest.approx(0.7)),
                                                     "video": (2, 0, pytest.approx(0.8))}
    assert family_cells.best_cells(df, "depth")["video"] == (2, 0, pytest.approx(0.7))
    gin = family_cells.family_gin("tracking", family_cells.best_cells(df, "motion"), ["@SyntheticBoxTracks()"])
    assert "'I-WALT': {'Backbone.variant': 'image'" in gin and "'Probe.block': 2, 'Probe.timestep': 0" in gin
    with pytest.raises(SystemExit, match="no finished trial of motion for V-WALT.*incomplete"):
        family_cells.best_cells(df[df.variant == "image"], "motion")


def test_scattered_cells_get_no_curves_or_heatmaps_and_the_notes_say_why(tmp_path):
    exp = tmp_path / "cells"
    # objects: each model at two cells sharing nothing; tracks: one block at two timesteps.
    for task, cells in [("objects", {"image": [(4, 100), (5, 200)], "video": [(8, 100), (5, 200)]}),
                        ("tracks", {"image": [(5, 0), (5, 100)], "video": [(5, 0), (5, 100)]})]:
        for variant, where in cells.items():
            for block, t in where:
                b = [f"Probe.block = {block}", f"Probe.timestep = {t}", f"Backbone.variant = '{variant}'",
                     f"TASK = @{task}()"]
                _trial(exp, f"{task}-{variant}-{block}-{t}", b, status="ok", error=None, value=0.5 + block / 100,
                       task=task, metric="top1", higher_is_better=True, variant=variant, size="tiny", block=block,
                       block_spec=block, num_blocks=8, t=t, backbone="walt")
    paths = report.write_report([exp], tmp_path / "out")
    assert "fig5_tracks" in paths and "fig5_objects" not in paths
    assert not any(name.startswith("heatmap_") for name in paths)
    assert not list((tmp_path / "out").glob("heatmap_*.png"))
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "Fig. 5 not drawn (no two cells of one model share a block or a t): objects" in summary
    assert "heatmap not drawn (no block at two t and t at two blocks): objects I-WALT tiny, objects V-WALT tiny, tracks" in summary


def test_a_failing_closing_report_never_fails_a_finished_sweep(tmp_path, monkeypatch, capsys):
    from types import SimpleNamespace

    from runners import sweep
    from runners.settings import Sweep

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the report")

    monkeypatch.setattr(report, "write_report", broken)
    finished = [SimpleNamespace(metrics={"status": "ok", "metric": "top1", "value": 0.5},
                                config={"gin": {"Probe.block": 1}}, error=None)]
    assert sweep._summarize(finished, tmp_path, Sweep(report=True), 1.0) == 0
    err = capsys.readouterr().err
    assert "the report could not be written (RuntimeError: a bug in the report)" in err and str(tmp_path) in err


def test_figure_data_of_whiskers_with_one_seed_is_nan_not_a_crash():
    """One readout seed has no spread: its whisker is NaN, which matplotlib draws as an empty
    segment. The figure's data table keeps the value and gives the spread as NaN."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from runners import plots

    fig, ax = plt.subplots()
    ax.errorbar([0, 1, 2], [0.5, 0.6, 0.7], yerr=[0.1, float("nan"), 0.2], label="V-WALT")
    ax.bar([0, 1], [0.1, -0.2], yerr=[float("nan"), 0.05], label="rel")
    table = plots.artists_table(fig)
    plt.close(fig)
    line = table[(table["kind"] == "errorbar") & (table["label"] == "V-WALT")].sort_values("x")
    assert list(line["y"]) == [0.5, 0.6, 0.7]
    err = list(line["err"])
    assert err[0] == pytest.approx(0.1) and err[2] == pytest.approx(0.2) and err[1] != err[1]
