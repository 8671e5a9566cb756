"""`walt-probe sweep` end to end through the real CLI (Ray local, 2 CPUs, dashboard off).

One grid (I-WALT / V-WALT x blocks {1, 99} x t {0, 500}) where block 99 does not exist, so
4 of 8 trials error with their message. The driver is killed with SIGTERM (or SIGINT) after
the first trials finish, the same command is rerun, and the result must be: every trial exactly
once in the CSV, the finished ones not rerun, the errored ones reported as errors with their
message, and every plot drawn.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from runners import sweep

# Two full sweeps (killed, then resumed) with Ray start-up: minutes, more on a busy machine.
pytestmark = pytest.mark.timeout(1800)

REPO = Path(__file__).resolve().parents[2]
WALT_PROBE = str(Path(sys.executable).with_name("walt-probe"))

GIN = """
include 'experiments/smoke_tiny.gin'
SyntheticMotionActions.num_train = 8
SyntheticMotionActions.num_val = 4
STEPS = 3
Probe.batch_size = 4
Probe.eval_batch_size = 4
Probe.use_cache = True
Probe.cache_dir = '{cache}'
Sweep.space = [@block_x_timestep(), @backbones()]
block_x_timestep.blocks = [1, 99]
block_x_timestep.timesteps = [0, 500]
Sweep.num_cpus = 2
Sweep.name = 'tiny'
Sweep.storage_path = '{storage}'
"""


def _finished(exp: Path) -> dict[Path, float]:
    out = {}
    for m in exp.glob("trials/*/metrics.json"):
        if json.loads(m.read_text()).get("status") == "ok":
            out[m] = m.stat().st_mtime_ns
    return out


def _run_killed_then_resumed(tmp: Path, sig: int) -> tuple[Path, dict, subprocess.CompletedProcess]:
    gin_file = tmp / "sweep.gin"
    gin_file.write_text(GIN.format(cache=tmp / "cache", storage=tmp / "sweeps"))
    cmd = [WALT_PROBE, "sweep", f"--gin_file={gin_file}", "--no-dashboard"]
    env = {**os.environ, "RAY_DEDUP_LOGS": "0"}
    exp = tmp / "sweeps" / "tiny"
    with open(tmp / "first.log", "w") as log:
        first = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 900
        while len(_finished(exp)) < 2 and first.poll() is None and time.time() < deadline:
            time.sleep(1)
        assert first.poll() is None, "the sweep ended before it could be interrupted"
        first.send_signal(sig)
        first.wait(timeout=180)
    before = _finished(exp)
    assert 2 <= len(before) < 4, (tmp / "first.log").read_text()[-3000:]
    second = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    return exp, before, second


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, synthetic_cache):
    return _run_killed_then_resumed(tmp_path_factory.mktemp("sweep"), signal.SIGTERM)


def test_resume_keeps_finished_trials_and_completes(resumed):
    exp, before, second = resumed
    # 4 of 8 trials error (block 99): the sweep completes and says so with its exit code.
    assert second.returncode == sweep.EXIT_TRIALS_NOT_OK, second.stdout[-3000:] + second.stderr[-3000:]
    assert "resuming" in second.stdout
    for path, mtime in before.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was rewritten: a finished trial ran again"
    assert len(_finished(exp)) == 4


def test_csv_has_each_trial_once_and_errors_as_errors(resumed):
    exp = resumed[0]
    df = pd.read_csv(exp / "report" / "results.csv")
    assert len(df) == 8
    assert not df.duplicated(["variant", "block_spec", "t"]).any()
    ok, bad = df[df.status == "ok"], df[df.status != "ok"]
    assert len(ok) == 4 and ok.value.notna().all() and set(ok.block) == {1}
    assert len(bad) == 4 and (bad.status == "failed").all() and bad.value.isna().all()
    assert bad.error.str.contains("block 99 does not exist").all()
    assert set(bad.task) == {"synthetic_motion"}  # the engine recorded what it knew when it failed
    summary = (exp / "report" / "summary.md").read_text()
    assert "block 99 does not exist" in summary and "Trials without a result" in summary


def test_every_plot_draws_the_sweeps_values(resumed):
    """The closing report's figures carry results.csv's numbers (read back from their artists)."""
    report = resumed[0] / "report"
    df = pd.read_csv(report / "results.csv")
    ok = df[df.status == "ok"]
    for name in ["fig1_relative_change", "fig7_relative_to_iwalt", "fig5_synthetic_motion",
                 "heatmap_synthetic_motion_I-WALT_tiny", "heatmap_synthetic_motion_V-WALT_tiny"]:
        assert (report / f"{name}.png").is_file(), name
    for model in ("I-WALT tiny", "V-WALT tiny"):
        mine = ok[ok.model == model]
        cells = pd.read_csv(report / f"heatmap_synthetic_motion_{model.replace(' ', '_')}.csv")
        cells = cells[cells.kind == "cell"]
        got = {(int(c.tick), int(c.x)): c.y for c in cells.itertuples()}
        want = mine.groupby(["block", "t"]).value.mean().to_dict()
        assert got.keys() == {(int(b), int(t)) for b, t in want} and \
            all(got[(int(b), int(t))] == pytest.approx(v) for (b, t), v in want.items())
    # Fig. 1: the relative change of the best cells (one bar: the one size of the grid), each
    # selected on val and reported on test.
    best = ok.loc[ok.groupby("model").value.idxmax()].set_index("model").test_value
    bar = pd.read_csv(report / "fig1_relative_change.csv").query("kind == 'bar'").y
    assert list(bar) == pytest.approx([(best["V-WALT tiny"] - best["I-WALT tiny"]) / abs(best["I-WALT tiny"]) * 100])


def test_grid_costs_one_backbone_pass_per_timestep_and_split(resumed):
    exp = resumed[0]
    cache = Path(json.loads((exp / "sweep.json").read_text())["gin"]["files"][0]).parent / "cache"
    manifests = [json.loads(m.read_text()) for m in cache.glob("*/manifest.json")]
    # 2 variants x 2 timesteps x 3 splits (train, val, test), each holding the valid grid block.
    assert len(manifests) == 12
    assert all(m["key"]["blocks"] == [1] for m in manifests)


def test_a_different_sweep_under_the_same_name_is_refused(resumed, tmp_path):
    exp = resumed[0]
    gin_file = Path(json.loads((exp / "sweep.json").read_text())["gin"]["files"][0])
    res = subprocess.run([WALT_PROBE, "sweep", f"--gin_file={gin_file}", "--no-dashboard",
                          "--gin.STEPS=4"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "holds a different sweep" in res.stderr


def test_a_sweep_run_by_other_code_is_refused(resumed):
    exp = resumed[0]
    sig = json.loads((exp / "sweep.json").read_text())
    gin_file = Path(sig["gin"]["files"][0])
    (exp / "sweep.json").write_text(json.dumps({**sig, "code": "0" * 16}))
    try:
        res = subprocess.run([WALT_PROBE, "sweep", f"--gin_file={gin_file}", "--no-dashboard"],
                             cwd=REPO, capture_output=True, text=True, timeout=300)
    finally:
        (exp / "sweep.json").write_text(json.dumps(sig))
    assert res.returncode == 2 and "was run by other code" in res.stderr and "--fresh" in res.stderr


def test_code_fingerprint_follows_the_source(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    before = sweep.code_fingerprint(tmp_path, ["pkg"])
    assert sweep.code_fingerprint(tmp_path, ["pkg"]) == before
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    assert sweep.code_fingerprint(tmp_path, ["pkg"]) != before


@pytest.mark.slow
def test_sigint_resume(tmp_path, synthetic_cache):
    exp, before, second = _run_killed_then_resumed(tmp_path, signal.SIGINT)
    assert second.returncode == sweep.EXIT_TRIALS_NOT_OK
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    assert len(pd.read_csv(exp / "report" / "results.csv")) == 8


def test_bindings_grid_and_keys():
    space = sweep.merge_spaces([{"Probe.block": {"grid_search": [1, 0.5]}, "Probe.timestep": {"grid_search": [0, 9]}},
                                {"model": {"grid_search": [{"__name__": "A", "Backbone.size": "tiny"},
                                                           {"__name__": "B", "Backbone.size": "small"}]},
                                 "TASK": "@SyntheticObjects()"}])
    assert len(sweep.expand_grid(space)) == 8
    groups = sweep.cache_groups(space)  # the block axis shares a cache entry
    assert len(groups) == 4 and all("TASK = @SyntheticObjects()" in g for g in groups)
    assert sweep.grid_blocks(space) == [1, 0.5]
    sample = {"Probe.block": 0.5, "model": {"__name__": "A", "Backbone.size": "tiny"}, "TASK": "@X()"}
    assert sweep.to_bindings(sample) == ["Probe.block = 0.5", "TASK = @X()", "Backbone.size = 'tiny'"]
    assert sweep.trial_key(sample, {"f": 1}) == sweep.trial_key(dict(reversed(sample.items())), {"f": 1})
    assert sweep.trial_key(sample, {"f": 1}) != sweep.trial_key(sample, {"f": 2})
    with pytest.raises(ValueError, match="both set"):
        sweep.merge_spaces([{"a.b": 1}, {"a.b": 2}])
