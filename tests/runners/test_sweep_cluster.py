"""The cluster path on one machine: a two-node Ray cluster (`ray start --head` + `ray start
--address`, each node with its own temp dir), a sweep joined through RAY_ADDRESS whose t = 500
trials are pinned to the second node by a custom resource, and that node's raylet killed with -9
while a pinned trial runs. A third node with the same resource stands in for the replacement a
cluster's autoscaler (or SLURM requeue) would bring up. Every trial must end ok exactly once, the
feature cache must hold each entry once, and the results must equal those of a one-node run.

Part of `make test` (CI): three Ray nodes, a node-death timeout and two sweeps took 66 s on 2
idle cores (4-8 minutes when the cores are busy with other work).
"""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from runners import ray_local, sweep

pytestmark = [pytest.mark.timeout(1500)]  # about 1 minute on 2 idle cores: runs in `make test`

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WALT_PROBE = str(BIN / "walt-probe")
RAY = str(BIN / "ray")

GIN = """
include 'experiments/smoke_tiny.gin'
SyntheticMotionActions.num_train = 8
SyntheticMotionActions.num_val = 4
STEPS = 1500
Probe.batch_size = 4
Probe.eval_batch_size = 4
Probe.use_cache = True
Probe.cache_dir = 'cache'
Sweep.space = @block_x_timestep()
block_x_timestep.blocks = [1, 2]
block_x_timestep.timesteps = [0, 500]
Sweep.pin = {{'Probe.timestep = 500': {{'side': 1}}}}
Sweep.name = '{name}'
Sweep.storage_path = '{storage}'
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """Ray nodes started by this test, each with its own temp dir under `root`; `stop()` ends
    every process whose command line names one of those dirs, and their descendants."""

    def __init__(self, root: Path, env: dict):
        self.root, self.env, self.port = root, env, _free_port()
        self.address = f"127.0.0.1:{self.port}"

    def _ray_start(self, name: str, *args: str) -> None:
        res = subprocess.run([RAY, "start", f"--temp-dir={self.root / name}", "--disable-usage-stats",
                              "--num-cpus=1", *args], env=self.env, capture_output=True, text=True,
                             timeout=180)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]

    def head(self) -> None:
        self._ray_start("head", "--head", f"--port={self.port}", "--node-ip-address=127.0.0.1",
                        "--include-dashboard=false")

    def worker(self, name: str) -> None:
        self._ray_start(name, f"--address={self.address}", "--resources={\"side\": 1}")

    def pids(self, name: str = "") -> dict[int, int]:
        """pid -> start time of the processes of node `name` (all nodes for ''), with descendants."""
        marker = str(self.root / name)
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cmd = open(f"/proc/{entry}/cmdline", "rb").read().decode(errors="replace")
            except OSError:
                continue
            if marker in cmd:
                pid = int(entry)
                start = ray_local._start_time(pid)
                if start is not None:
                    found[pid] = start
                    found.update(ray_local.descendants(pid))
        return found

    def raylet(self, name: str) -> int:
        for pid in self.pids(name):
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0]
            except OSError:
                continue
            if cmd.endswith(b"/raylet"):
                return pid
        raise AssertionError(f"no raylet of node {name}")

    def stop(self) -> None:
        left = self.pids()
        ray_local._kill_recorded(left)


def _ok_trials(exp: Path) -> dict[str, dict]:
    out = {}
    for m in exp.glob("trials/*/metrics.json"):
        out[m.parent.name] = json.loads(m.read_text())
    return out


def _running_pinned(exp: Path) -> bool:
    """A t = 500 trial has started (trial.json written) and not finished (no metrics.json)."""
    for t in exp.glob("trials/*/trial.json"):
        sample = json.loads(t.read_text())["sample"]
        if sample.get("Probe.timestep") == 500 and not (t.parent / "metrics.json").exists():
            return True
    return False


def test_sweep_survives_a_lost_node(tmp_path, synthetic_cache):
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_DEDUP_LOGS": "0",
           # token auth with a token of this test only; nodes declared dead after ~3 s of silence
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}
    env.pop("RAY_ADDRESS", None)
    gin_file = tmp_path / "cluster.gin"
    gin_file.write_text(GIN.format(name="cluster", storage=tmp_path / "sweeps"))
    cluster = Cluster(Path(f"/tmp/wpc{os.getpid()}"), env)  # short: Ray's socket paths are length-limited
    try:
        cluster.head()
        cluster.worker("b")
        exp = tmp_path / "sweeps" / "cluster"
        log = tmp_path / "cluster.log"
        driver = subprocess.Popen([WALT_PROBE, "sweep", f"--gin_file={gin_file}", "--no-report"],
                                  cwd=tmp_path, env={**env, "RAY_ADDRESS": cluster.address},
                                  stdout=open(log, "w"), stderr=subprocess.STDOUT)
        deadline = time.time() + 600
        # 1,500 readout steps keep a pinned trial running for seconds: with 30 the window between
        # its trial.json and its metrics.json fell under this poll's interval on idle cores.
        while not _running_pinned(exp) and driver.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert driver.poll() is None, log.read_text()[-3000:]
        running_before = {t.parent.name for t in exp.glob("trials/*/trial.json")
                          if not (t.parent / "metrics.json").exists()}
        os.kill(cluster.raylet("b"), signal.SIGKILL)
        cluster.worker("c")  # the replacement node
        driver.wait(timeout=900)
        text = log.read_text()
        assert driver.returncode == 0, text[-4000:]
        assert "joined the Ray cluster" in text
        trials = _ok_trials(exp)
        assert len(trials) == 4 and all(m["status"] == "ok" for m in trials.values()), text[-4000:]
        assert running_before <= set(trials)  # the trials cut off by the lost node finished
        summary = [line for line in text.splitlines() if line.startswith("  ok ")]
        assert len(summary) == 4, text[-3000:]  # each grid point reported once
        manifests = [json.loads(m.read_text()) for m in (tmp_path / "cache").glob("*/manifest.json")]
        keys = [json.dumps(m["key"], sort_keys=True) for m in manifests]
        assert len(keys) == 6 and len(set(keys)) == 6  # 2 timesteps x 3 splits, each once

        # The same sweep on one node (no pin: that node has no 'side' resource).
        local = subprocess.run([WALT_PROBE, "sweep", f"--gin_file={gin_file}", "--no-dashboard",
                                "--no-report", "--name=one", "--num_cpus=2", "--gin.Sweep.pin=None"],
                               cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]
    finally:
        cluster.stop()
    deadline = time.time() + 15
    while cluster.pids() and time.time() < deadline:
        time.sleep(0.5)
    assert not cluster.pids(), "processes of the test cluster outlived it"
    assert "nodes; each read back the markers" in text  # the shared-path check ran on 2 nodes
    one = _ok_trials(tmp_path / "sweeps" / "one")
    by_point = lambda ts: {(m["block"], m["t"]): m["value"] for m in ts.values()}  # noqa: E731
    assert by_point(one) == pytest.approx(by_point(trials), abs=1e-6)


def test_marker_check_names_what_a_node_cannot_read(tmp_path):
    (tmp_path / "m").write_text("token-a")
    answer = sweep.check_marker({"cache": (str(tmp_path / "m"), "token-a"),
                                 "storage": (str(tmp_path / "m"), "token-b"),
                                 "data": (str(tmp_path / "absent"), "token-c")})
    assert set(answer["missing"]) == {"storage", "data"}
    assert "No such file" in answer["missing"]["data"]
