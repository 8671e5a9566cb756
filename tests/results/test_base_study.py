"""results/base_study/study.py: probe jobs grouped by cache entry, cells selected on val in the
metric's direction, budget tags, and the correlation table (fast; no backbone is built)."""

import json
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[2] / "results" / "base_study"
sys.path.insert(0, str(HERE))
import analysis  # noqa: E402
import study as S  # noqa: E402


@pytest.fixture
def st(tmp_path):
    return S.Study(tmp_path, "tiny", 1, None)


def _write(st, job, metric, higher, val, test):
    res = {"status": "ok", "metric": metric, "higher_is_better": higher, "job": job,
           "val": {metric: val}, "test": {metric: test}}
    S.write_json(st.root / "probes" / job["id"] / "result.json", res)


def test_jobs_of_one_entry_share_a_group_and_cache_all_its_blocks():
    jobs = S.make_jobs([("I-WALT", "final", "depth", b, 200, s) for b in (2, 4) for s in (0, 1)]
                       + [("V-WALT", "final", "depth", 2, 200, 0)])
    groups = {S.group_key(j) for j in jobs}
    assert len(groups) == 2 and len({j["id"] for j in jobs}) == 5
    assert all(j["cache_blocks"] == [2, 4] for j in jobs if j["model"] == "I-WALT")
    assert next(j for j in jobs if j["model"] == "V-WALT")["cache_blocks"] == [2]


def test_cells_are_selected_on_val_in_the_metric_direction(st):
    st.s["grid_blocks"], st.s["grid_t"] = [2, 4], [0]
    for j in S.grid_jobs(st):
        higher = j["task"] != "depth"
        # val prefers block 4 everywhere; test prefers block 2 (must not leak into selection)
        good = j["block"] == 4
        val = (0.9 if good else 0.1) if higher else (0.1 if good else 0.9)
        _write(st, j, "top1" if higher else "abs_rel", higher, val, 1 - val)
    cells = S.select_cells(st)
    assert all(cells[m][k] == [4, 0] for m in S.MODELS for k in S.GRID_TASKS)
    jobs = S.cells_jobs(st, cells)
    # every analog, both models, both seeds, each at its family's cell; depth and pose also with
    # the 'geo' readout recipe
    extra = sum(map(len, S.RECIPE_TASKS.values()))
    assert len(jobs) == (len(S.ANALOGS) + extra) * len(S.MODELS) * len(st.s["seeds"])
    assert {(j["block"], j["t"]) for j in jobs} == {(4, 0)}


def test_budget_jobs_skip_missing_fraction_exports(st):
    cells = {m: {k: [2, 0] for k in S.GRID_TASKS} for m in S.MODELS}
    path = st.walt_path("I-WALT", "p050")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")
    tags = {(j["model"], j["ckpt"]) for j in S.budget_jobs(st, cells)}
    assert ("I-WALT", "p050") in tags and ("I-WALT", "final") in tags
    assert ("I-WALT", "p005") not in tags and ("V-WALT", "p050") not in tags


def test_correlations_use_the_models_own_validation_loss():
    stats = [{"model": m, "task": "objects", "ckpt": "final" if t == "p100" else t,
              "test_mean": v} for m in S.MODELS for t, v in zip(S.BUDGET_TAGS, range(6))]
    losses = {(m, t): {"val_mse_clips": 1.0 - 0.1 * i, "val_mse_images": 0.5 + 0.1 * i}
              for m in S.MODELS for i, t in enumerate(S.BUDGET_TAGS)}
    rows = {(r["model"], r["task"]): r for r in analysis.correlations(stats, losses)}
    v, i = rows[("V-WALT", "objects")], rows[("I-WALT", "objects")]
    assert v["n_points"] == 6 and v["spearman_val_loss"] == pytest.approx(-1.0)   # clips fall
    assert i["spearman_val_loss"] == pytest.approx(1.0)                          # images rise
    assert v["spearman_budget"] == pytest.approx(1.0) and 0 <= v["pearson_budget_p"] <= 1
    assert rows[("V-WALT", "motion")]["n_points"] == 0 and "pearson_budget" not in rows[("V-WALT", "motion")]
    # a perfect rank order of six points: exact two-sided p = 2 / 6! (scipy's t approximation: 0)
    assert v["spearman_budget_p"] == pytest.approx(2 / 720)


def test_the_exact_spearman_p_counts_pairings_at_least_as_extreme():
    import itertools

    from scipy import stats
    x, y = [1, 2, 3, 4, 5], [2, 1, 3, 5, 4]                 # rho = 0.8
    rhos = [stats.spearmanr(x, p).statistic for p in itertools.permutations(y)]
    expected = sum(abs(r) >= 0.8 - 1e-9 for r in rhos) / len(rhos)
    assert 0 < expected < 0.2
    assert analysis.spearman_exact_p(x, y) == pytest.approx(expected)


def test_probes_out_of_device_memory_run_again_with_fewer_workers(st, monkeypatch):
    """A group with an out-of-memory failure is rerun (all its failed probes, also the ones
    that failed otherwise after it), with a quarter of the workers; the first record is kept.
    A group whose probe failed for another reason is not retried."""
    jobs = S.make_jobs([("I-WALT", "final", "box_tracks", 8, 0, s) for s in (0, 1)]
                       + [("V-WALT", "final", "pose", 8, 0, 0), ("V-WALT", "final", "depth", 8, 0, 0)])
    errors = {jobs[0]["id"]: "OutOfMemoryError: CUDA out of memory. Tried to allocate 3.74 GiB",
              jobs[1]["id"]: "AssertionError: ", jobs[2]["id"]: "ValueError: a real bug"}
    calls = []

    def fake_pool(st_, groups, workers, deadline):
        calls.append((workers, sorted(j["id"] for g in groups for j in g)))
        for g in groups:
            for j in g:
                failed = len(calls) == 1 and j["id"] in errors
                res = {"status": "failed", "error": errors[j["id"]]} if failed else {"status": "ok"}
                S.write_json(st_.root / "probes" / j["id"] / "result.json", {**res, "job": j})

    monkeypatch.setattr(S, "run_pool", fake_pool)
    st.s["workers"] = 8
    S.run_jobs(st, jobs, "cells")
    assert calls[0] == (8, sorted(j["id"] for j in jobs))
    assert calls[1] == (2, sorted([jobs[0]["id"], jobs[1]["id"]]))
    assert len(calls) == 2
    for j in jobs[:2]:
        probe = st.root / "probes" / j["id"]
        assert json.loads((probe / "result.json").read_text())["status"] == "ok"
        assert json.loads((probe / "result_attempt1.json").read_text())["error"] == errors[j["id"]]
    pose = json.loads((st.root / "probes" / jobs[2]["id"] / "result.json").read_text())
    assert pose["status"] == "failed"   # not a memory failure: recorded, not retried


def test_the_geo_recipe_probes_depth_and_pose_at_the_selected_cells_on_the_same_features(st):
    cells = {m: {k: [4, 0] for k in S.GRID_TASKS} for m in S.MODELS}
    jobs = S.cells_jobs(st, cells)
    geo = [j for j in jobs if j["recipe"] == "geo"]
    assert {j["task"] for j in geo} == {"depth", "pose"}
    assert len(geo) == 2 * len(S.MODELS) * len(st.s["seeds"])
    plain = {j["id"]: j for j in jobs if not j["recipe"]}
    for j in geo:
        twin = plain[j["id"].removesuffix("_rgeo")]
        assert S.group_key(j) == S.group_key(twin) and (j["block"], j["t"]) == (twin["block"], twin["t"])
        # the recipe's bindings follow the scale's (tiny: STEPS = 3), so they override them
        b = S.probe_bindings(st, j)
        first = b.index(st.s["recipes"]["geo"][0])
        assert b[first:first + len(st.s["recipes"]["geo"])] == st.s["recipes"]["geo"]
        assert first > max(b.index(x) for x in st.s["probe"]) and "STEPS = 3" in st.s["probe"]
    controls = S.controls_jobs(st)
    assert sum(j["recipe"] == "geo" for j in controls) == 2 * 2 * len(st.s["seeds"])


def test_cells_from_an_earlier_run_are_checked_and_their_source_recorded(st, tmp_path):
    good = tmp_path / "selected_cells.json"
    good.write_text(json.dumps({m: {k: [4, 0] for k in S.GRID_TASKS} for m in S.MODELS}))
    assert S.cells_from(st, good)["V-WALT"]["depth"] == [4, 0]
    assert json.loads((st.root / "results" / "selected_cells.json").read_text()) == json.loads(good.read_text())
    assert json.loads((st.root / "results" / "cells_source.json").read_text())["cells_from"] == str(good)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"I-WALT": {"depth": 4}}))
    with pytest.raises(SystemExit, match="I-WALT/depth: 4"):
        S.cells_from(st, bad)
    with pytest.raises(SystemExit, match="no such file"):
        S.cells_from(st, tmp_path / "missing.json")


def test_controls_can_be_narrowed_to_some_backbones_and_analogs(st):
    st.s["control_models"], st.s["control_analogs"] = ["oracle"], ["depth", "point_tracks"]
    jobs = S.controls_jobs(st)
    assert {(j["model"], j["task"], j["recipe"]) for j in jobs} == {
        ("oracle", "depth", ""), ("oracle", "point_tracks", ""), ("oracle", "depth", "geo")}
    assert len(jobs) == 3 * len(st.s["seeds"])


def test_the_queue_puts_the_goal_analogs_cells_first_then_the_budget_then_the_rest(st):
    cells = {m: {k: [4, 0] for k in S.GRID_TASKS} for m in S.MODELS}
    for m in S.MODELS:   # the budget's checkpoints (only their presence is read)
        for tag in S.BUDGET_TAGS:
            S.write_json(st.walt_path(m, tag), {})
    stage_jobs = {"cells": S.cells_jobs(st, cells), "budget": S.budget_jobs(st, cells),
                  "controls": S.controls_jobs(st)}
    queue = S.queue_order(stage_jobs)
    ids = [j["id"] for j in queue]
    assert len(ids) == len(set(ids)) == len({j["id"] for js in stage_jobs.values() for j in js})
    goal = [j for j in stage_jobs["cells"] if j["task"] in S.GOAL_TASKS]
    assert {j["id"] for j in queue[:len(goal)]} == {j["id"] for j in goal}
    # longest analogs first, the first seed of both recipes before the second seed
    assert [j["task"] for j in queue[:len(goal)]] == sorted(
        (j["task"] for j in goal), key=S.GOAL_TASKS.index)
    depth = [(j["seed"], j["recipe"]) for j in queue if j["task"] == "depth" and j["model"] == "I-WALT"]
    assert depth[:2] == [(0, ""), (0, "geo")]
    budget_only = [j for j in stage_jobs["budget"] if j["ckpt"] != "final"]
    budget_ids = {j["id"] for j in stage_jobs["budget"]}
    first_rest = min(ids.index(j["id"]) for j in stage_jobs["cells"]
                     if j["task"] not in S.GOAL_TASKS and j["id"] not in budget_ids)
    assert budget_only and max(ids.index(j["id"]) for j in budget_only) < first_rest
    assert ids[-len(stage_jobs["controls"]):] == [j["id"] for j in stage_jobs["controls"]]
    # the budget: task by task, each fraction for both models before the next fraction
    fractions = [(j["task"], j["ckpt"], j["model"]) for j in queue if j["id"] in {b["id"] for b in budget_only}]
    assert [f[0] for f in fractions[:10]] == ["point_tracks"] * 10
    assert fractions[:2] == [("point_tracks", "p005", "I-WALT"), ("point_tracks", "p005", "V-WALT")]


def test_probes_an_earlier_run_measured_go_last_in_their_own_order(st, tmp_path):
    cells = {m: {k: [4, 0] for k in S.GRID_TASKS} for m in S.MODELS}
    for m in S.MODELS:
        for tag in S.BUDGET_TAGS:
            S.write_json(st.walt_path(m, tag), {})
    stage_jobs = {"cells": S.cells_jobs(st, cells), "budget": S.budget_jobs(st, cells)}
    plain = [j["id"] for j in S.queue_order(stage_jobs)]
    earlier = S.Study(tmp_path / "earlier", "tiny", 1, None)
    done = [j for j in stage_jobs["cells"] if j["model"] == "I-WALT"][:5]
    for j in done:
        _write(earlier, j, "acc", True, 0.5, 0.5)
    failed = stage_jobs["budget"][0]   # a failed probe is not a measurement
    S.write_json(earlier.root / "probes" / failed["id"] / "result.json", {"status": "failed"})
    measured = S.measured_ids(earlier.root)
    assert measured == {j["id"] for j in done}
    queue = [j["id"] for j in S.queue_order(stage_jobs, measured)]
    assert sorted(queue) == sorted(plain)
    assert set(queue[-len(done):]) == measured
    assert queue[:-len(done)] == [i for i in plain if i not in measured]
    assert queue[-len(done):] == [i for i in plain if i in measured]
    with pytest.raises(SystemExit, match="no probes/ folder"):
        S.measured_ids(tmp_path / "nowhere")


def test_a_deadline_skips_whole_groups_and_a_started_groups_later_probes(st, monkeypatch):
    from runners import gin_setup, trial
    jobs = S.make_jobs([("I-WALT", "final", "depth", 8, 0, s) for s in (0, 1)])
    assert S.run_group((str(st.root), st.scale, 1, jobs, time.time() - 1)) == []
    deadline = time.time() + 0.5

    def slow_probe(probe, seed, device):   # the first probe runs past the deadline
        time.sleep(max(0.0, deadline - time.time()) + 0.1)
        return {"status": "ok"}

    monkeypatch.setattr(gin_setup, "parse", lambda *a, **k: None)
    monkeypatch.setattr(trial, "build_probe", lambda: None)
    monkeypatch.setattr(S, "score_probe", slow_probe)
    assert S.run_group((str(st.root), st.scale, 1, jobs, deadline)) == [jobs[0]["id"]]
    assert not (st.root / "probes" / jobs[1]["id"] / "result.json").exists()


def test_analysis_shows_an_earlier_runs_controls_where_this_run_has_none_and_marks_them(st, tmp_path):
    st.s["control_models"], st.s["control_analogs"] = ["oracle"], ["depth"]
    oracle = next(j for j in S.controls_jobs(st) if j["seed"] == 0 and not j["recipe"])
    _write(st, oracle, "abs_rel", False, 0.11, 0.12)
    earlier = S.Study(tmp_path / "earlier", "tiny", 1, None)
    every = S.controls_jobs(st, every=True)
    pixels = next(j for j in every if j["model"] == "pixels" and j["task"] == "depth" and j["seed"] == 0
                  and not j["recipe"])
    _write(earlier, pixels, "abs_rel", False, 0.27, 0.28)
    _write(earlier, oracle, "abs_rel", False, 0.5, 0.5)   # this run has its own: not borrowed
    st.s["controls_from"] = [str(earlier.root)]
    analysis.write_all(st)
    row = next(line for line in (st.root / "results" / "tables.md").read_text().splitlines()
               if line.startswith("| depth | "))
    assert "| 0.280 ± - † | 0.120 ± - |" in row
    assert str(earlier.root) in (st.root / "results" / "tables.md").read_text()
    # several runs: per probe the first with an ok result; a failed one gives way to a later run
    older = S.Study(tmp_path / "older", "tiny", 1, None)
    pixels1 = next(j for j in every if j["model"] == "pixels" and j["task"] == "depth" and j["seed"] == 1
                   and not j["recipe"])
    _write(older, pixels, "abs_rel", False, 0.9, 0.9)
    S.write_json(earlier.root / "probes" / pixels1["id"] / "result.json", {"status": "failed", "job": pixels1})
    _write(older, pixels1, "abs_rel", False, 0.30, 0.32)
    st.s["controls_from"] = [str(earlier.root), str(older.root)]
    analysis.write_all(st)
    row = next(line for line in (st.root / "results" / "tables.md").read_text().splitlines()
               if line.startswith("| depth | "))
    assert "| 0.300 ± 0.040 † | 0.120 ± - |" in row   # 0.28 from the first run, 0.32 from the second
    # an analog this run did not render takes its trivial predictor from those runs, marked
    (older.root / "results").mkdir(parents=True, exist_ok=True)
    (older.root / "results" / "trivial.csv").write_text(
        "task,metric,val,test,predictor,n_train,n_val,n_test\ndepth,abs_rel,0.25,0.24,train mean,8,4,4\n")
    analysis.write_all(st)
    row = next(line for line in (st.root / "results" / "tables.md").read_text().splitlines()
               if line.startswith("| depth | "))
    assert row.endswith("| 0.240 † |") and "| abs_rel |" in row
    del st.s["controls_from"]
    analysis.write_all(st)
    assert "†" not in (st.root / "results" / "tables.md").read_text()


def test_analysis_borrows_an_earlier_runs_walt_probes_only_on_byte_identical_checkpoints(st, tmp_path):
    cells = {m: {k: [4, 0] for k in S.GRID_TASKS} for m in S.MODELS}
    S.write_json(st.root / "results" / "selected_cells.json", cells)
    earlier = S.Study(tmp_path / "earlier", "tiny", 1, None)
    jobs = [j for j in S.cells_jobs(st, cells) if j["task"] == "objects" and not j["recipe"]]
    i0, i1, v0 = (next(j for j in jobs if j["model"] == m and j["seed"] == s)
                  for m, s in (("I-WALT", 0), ("I-WALT", 1), ("V-WALT", 0)))
    _write(st, i0, "top1", True, 0.50, 0.40)        # this run's own seed 0
    for j, test in ((i0, 0.99), (i1, 0.60), (v0, 0.70)):
        _write(earlier, j, "top1", True, test, test)

    def digests(root, tok, iwalt, vwalt):
        names = {"tokenizer/export/tokenizer.safetensors": tok,
                 st.walt_path("I-WALT", "final").relative_to(st.root).as_posix(): iwalt,
                 st.walt_path("V-WALT", "final").relative_to(st.root).as_posix(): vwalt}
        (root / "checkpoints_sha256_device.txt").write_text("".join(f"{d}  {n}\n" for n, d in names.items()))
    digests(st.root, "t" * 64, "a" * 64, "b" * 64)
    (earlier.root / "logs").mkdir(parents=True)
    digests(earlier.root / "logs", "t" * 64, "a" * 64, "c" * 64)   # V-WALT differs: not borrowed
    st.s["probes_from"] = str(earlier.root)
    analysis.write_all(st)
    rows = {(r["model"], r["seed"]): r for r in csv_rows(st.root / "results" / "cells.csv")
            if r["task"] == "objects" and not r["recipe"]}
    assert rows[("I-WALT", "0")]["test"] == "0.4" and not rows[("I-WALT", "0")]["source"]   # own kept
    assert rows[("I-WALT", "1")]["source"] == str(earlier.root)
    assert ("V-WALT", "0") not in rows
    line = next(x for x in (st.root / "results" / "tables.md").read_text().splitlines()
                if x.startswith("| objects | "))
    assert "0.500 ± 0.200 (b4 t0) ‡" in line          # seeds 0.40 (own) and 0.60 (borrowed)
    assert "byte-identical" in (st.root / "results" / "tables.md").read_text()
    digests(earlier.root / "logs", "x" * 64, "a" * 64, "b" * 64)   # another tokenizer: nothing
    analysis.write_all(st)
    assert "‡" not in (st.root / "results" / "tables.md").read_text()


def csv_rows(path):
    import csv
    with open(path) as fh:
        return list(csv.DictReader(fh))
