"""A sweep can be supervised: its exit code tells whether every trial is ok, one sweep holds an
experiment folder at a time, Ray listens on loopback only and leaves nothing behind.

The end-to-end part starts two identical sweeps at once through the real CLI (Ray local, 2 CPUs,
no dashboard) on a grid of blocks {1, 99} x lr {3e-4, 1e30}: one trial ok, one diverging (lr
1e30), two failing (block 99 does not exist). While they run, /proc/net/tcp{,6} is read for the
listening sockets of the winner's process tree.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from runners import exp_lock, ray_local, sweep

pytestmark = pytest.mark.timeout(900)

REPO = Path(__file__).resolve().parents[2]
WALT_PROBE = str(Path(sys.executable).with_name("walt-probe"))

GIN = """
include 'experiments/smoke_tiny.gin'
SyntheticMotionActions.num_train = 8
SyntheticMotionActions.num_val = 4
STEPS = 6
Probe.batch_size = 4
Probe.eval_batch_size = 4
Probe.use_cache = True
Probe.cache_dir = 'relative_cache'
Sweep.space = [@block_x_timestep(), {{'PaperOptimizer.lr': {{'grid_search': [0.0003, 1e30]}}}}]
block_x_timestep.blocks = [1, 99]
block_x_timestep.timesteps = [0]
Sweep.num_cpus = 2
Sweep.name = '{name}'
Sweep.storage_path = '{storage}'
"""


def _gin(tmp: Path, name: str) -> Path:
    path = tmp / f"{name}.gin"
    path.write_text(GIN.format(name=name, storage=tmp / "sweeps"))
    return path


def _start(tmp: Path, gin_file: Path, log: str, *flags: str) -> subprocess.Popen:
    env = {**os.environ, "RAY_DEDUP_LOGS": "0", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([WALT_PROBE, "sweep", f"--gin_file={gin_file}", "--no-dashboard", *flags],
                            cwd=tmp, env=env, stdout=open(tmp / log, "w"), stderr=subprocess.STDOUT)


def _tree(pid: int) -> dict[int, int]:
    tree = ray_local.descendants(pid)
    start = ray_local._start_time(pid)
    return {**tree, pid: start} if start is not None else tree


def _describe(pids: list[int]) -> list[str]:
    """pid, parent and command line of each (what a failure needs to name the survivor)."""
    out = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
            ppid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
        except OSError:
            cmd, ppid = "(gone)", "?"
        out.append(f"{pid} (parent {ppid}): {cmd}")
    return out


def _alive(recorded: dict[int, int]) -> list[int]:
    return [p for p, start in recorded.items() if ray_local._start_time(p) == start]


def _watch(proc: subprocess.Popen, timeout: float):
    """Poll the process tree's listening sockets until `proc` exits; (pids seen, listeners seen)."""
    pids: dict[int, int] = {}
    listeners: dict[int, ray_local.Listener] = {}
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        tree = _tree(proc.pid)
        pids.update(tree)
        for sock in ray_local.listening_sockets(tree):
            listeners[sock.inode] = sock
        time.sleep(0.5)
    return pids, listeners


@pytest.fixture(scope="module")
def two_sweeps(tmp_path_factory, synthetic_cache):
    tmp = tmp_path_factory.mktemp("supervised")
    gin_file = _gin(tmp, "sup")
    a, b = _start(tmp, gin_file, "a.log"), _start(tmp, gin_file, "b.log")
    # The loser exits within seconds (the lock is taken before Ray starts); watch the other one.
    deadline = time.time() + 120
    while a.poll() is None and b.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    loser, winner = (a, b) if a.poll() is not None else (b, a)
    pids, listeners = _watch(winner, timeout=700)
    winner.wait(timeout=60)
    loser.wait(timeout=60)
    ended = time.time()
    logs = {p: (tmp / ("a.log" if p is a else "b.log")).read_text() for p in (a, b)}
    return SimpleNamespace(tmp=tmp, exp=tmp / "sweeps" / "sup", winner=winner, loser=loser,
                           winner_log=logs[winner], loser_log=logs[loser], pids=pids,
                           listeners=listeners, ended=ended)


def test_second_identical_sweep_is_refused_naming_the_holder(two_sweeps):
    s = two_sweeps
    assert s.loser.returncode == 2, s.loser_log[-2000:]
    assert "is in use by another sweep" in s.loser_log
    assert f"pid {s.winner.pid} on host" in s.loser_log


def test_each_trial_ran_once(two_sweeps):
    trials = sorted((two_sweeps.exp / "trials").glob("*/metrics.json"))
    assert len(trials) == 4
    # One Tune trial per grid point in the experiment state: nothing of the loser's was started.
    assert len(list(two_sweeps.exp.glob("trial_*"))) in (0, 4)
    statuses = sorted(json.loads(p.read_text())["status"] for p in trials)
    assert statuses == ["diverged", "failed", "failed", "ok"]


def test_failing_and_diverging_trials_exit_non_zero_each_by_its_own_label(two_sweeps):
    s = two_sweeps
    assert s.winner.returncode == sweep.EXIT_TRIALS_NOT_OK, s.winner_log[-3000:]
    lines = [line.strip() for line in s.winner_log.splitlines()]
    assert any(line.startswith("diverged") and "lr=1e+30 block=1 " in line and "loss became" in line
               for line in lines), s.winner_log[-3000:]
    for lr in ("0.0003", "1e+30"):
        assert any(line.startswith("error") and f"lr={lr} block=99 " in line
                   and "block 99 does not exist" in line for line in lines), s.winner_log[-3000:]
    assert any(line.startswith("ok") and "lr=0.0003 block=1 " in line for line in lines)
    assert "3 trial(s) not ok -> exit 3" in s.winner_log


def test_ray_listens_on_loopback_only_and_leaves_nothing(two_sweeps):
    s = two_sweeps
    assert len(s.listeners) >= 3, "no Ray listener was seen: the check saw nothing"
    exposed = [x for x in s.listeners.values() if not x.loopback]
    assert not exposed, f"listening beyond loopback: {exposed}"
    time.sleep(max(0.0, 5 - (time.time() - s.ended)))
    assert not _alive(s.pids), f"left running 5 s after the sweep: {_alive(s.pids)}"
    left = set(ray_local._listening_inodes()) & set(s.listeners)
    assert not left, f"sockets still listening 5 s after the sweep: {[s.listeners[i] for i in left]}"


def test_relative_cache_dir_became_absolute(two_sweeps):
    # The gin file says 'relative_cache': the trials wrote it under the driver's cwd, not a trial dir.
    assert list((two_sweeps.tmp / "relative_cache").glob("*/manifest.json"))


@pytest.mark.slow  # a second sweep (~2 min on 2 busy cores); the flag's effect is unit-tested below
def test_allow_failures_exits_zero_on_the_finished_sweep(two_sweeps):
    done = {m: m.stat().st_mtime_ns for m in (two_sweeps.exp / "trials").glob("*/metrics.json")
            if json.loads(m.read_text())["status"] in ("ok", "diverged")}
    res = subprocess.run([WALT_PROBE, "sweep", f"--gin_file={two_sweeps.tmp / 'sup.gin'}", "--no-dashboard",
                          "--allow-failures", "--no-report"], cwd=two_sweeps.tmp, capture_output=True,
                         text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "resuming" in res.stdout, res.stdout[-2000:]
    assert len(done) == 2 and all(m.stat().st_mtime_ns == t for m, t in done.items())  # not rerun
    assert "2 trial(s) not ok" not in res.stderr and "exit 3" not in res.stderr


@pytest.mark.parametrize("sig", [signal.SIGKILL, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_driver_killed_leaves_no_ray_process(tmp_path, synthetic_cache, sig):
    proc = _start(tmp_path, _gin(tmp_path, f"killed{int(sig)}"), "k.log")
    recorded: dict[int, int] = {}
    deadline = time.time() + 300
    # Wait for Ray's node (raylet, GCS, agents) to listen, then end the driver.
    while proc.poll() is None and time.time() < deadline:
        tree = _tree(proc.pid)
        recorded.update(tree)
        if len(ray_local.listening_sockets(tree)) >= 5:
            break
        time.sleep(0.5)
    assert proc.poll() is None, (tmp_path / "k.log").read_text()[-2000:]
    time.sleep(2)
    recorded.update(_tree(proc.pid))
    inodes = {x.inode for x in ray_local.listening_sockets(recorded)}
    proc.send_signal(sig)
    proc.wait(timeout=120)
    ended = time.time()
    while _alive(recorded) and time.time() < ended + 15:
        time.sleep(0.5)
    assert not _alive(recorded), (f"{_describe(_alive(recorded))} alive {time.time() - ended:.0f}s after "
                                  f"the driver ended; its log: {(tmp_path / 'k.log').read_text()[-1500:]}")
    assert not set(ray_local._listening_inodes()) & inodes


# ----------------------------------------------------------------------------- in-process units

def test_lock_names_the_holder_and_takes_over_a_stale_one(tmp_path):
    with exp_lock.acquire(tmp_path) as held:
        assert held.stale is None
        with pytest.raises(exp_lock.SweepLocked, match=f"pid {os.getpid()} on host"):
            exp_lock.acquire(tmp_path)
    # A holder killed with -9 leaves its record but not its flock: the next sweep takes over.
    code = ("import sys, os, time; sys.path.insert(0, sys.argv[2]); from runners import exp_lock; "
            "exp_lock.acquire(__import__('pathlib').Path(sys.argv[1])); print('held', flush=True); "
            "time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(REPO)], stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(exp_lock.SweepLocked, match=f"pid {holder.pid} "):
        exp_lock.acquire(tmp_path)
    holder.kill()
    holder.wait()
    lock = exp_lock.acquire(tmp_path)
    assert lock.stale is not None and lock.stale["pid"] == holder.pid
    assert json.loads((tmp_path / exp_lock.LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()


class _Result:
    def __init__(self, status, config, error=None):
        self.metrics = {"status": status, "metric": "top1", "value": 0.5, "error": error}
        self.config, self.error = {"gin": config}, None


def test_summary_exit_codes_and_a_failing_report(tmp_path, monkeypatch, capsys):
    from runners import report

    def broken(*a, **k):
        raise ValueError("metrics.json is not JSON")
    monkeypatch.setattr(report, "write_report", broken)
    sw = sweep.Sweep(report=True)
    grid = [_Result("ok", {"Probe.block": 1}), _Result("diverged", {"Probe.block": 2}, "loss became nan")]
    assert sweep._summarize(grid, tmp_path, sw, 1.0) == sweep.EXIT_TRIALS_NOT_OK
    err = capsys.readouterr().err
    assert "report could not be written" in err and "metrics.json is not JSON" in err
    assert sweep._summarize(grid, tmp_path, sw, 1.0, allow_failures=True) == 0
    assert sweep._summarize(grid[:1], tmp_path, sw, 1.0) == 0


def test_allow_failures_flag_reaches_the_sweep():
    from runners import cli

    parser, _ = cli.build_parser(["sweep"])
    assert parser.parse_args(["sweep", "--allow-failures"]).allow_failures is True
    assert parser.parse_args(["sweep"]).allow_failures is False


def test_absolute_path_bindings(tmp_path):
    from runners import configurables, gin_setup  # noqa: F401

    gin_setup.parse(gin_setup.GinArgs(files=(str(gin_setup.DEFAULT_SEARCH_PATH / "experiments/smoke_tiny.gin"),)),
                    ["Probe.cache_dir = 'c/features'", "WALT_CHECKPOINT = 'ckpt/w.safetensors'",
                     "Run.output_dir = '/abs/out'"])
    out = sweep.absolute_path_bindings(tmp_path)
    assert f"probing.probe.Probe.cache_dir = {str(tmp_path / 'c/features')!r}" in out
    assert f"WALT_CHECKPOINT = {str(tmp_path / 'ckpt/w.safetensors')!r}" in out
    assert not any("output_dir" in b for b in out)  # already absolute
    gin_setup.parse(gin_setup.GinArgs())  # Probe.cache_dir left at its default: bound all the same
    assert f"Probe.cache_dir = {str(tmp_path / 'cache/features')!r}" in sweep.absolute_path_bindings(tmp_path)
