"""The sweep guard's clean-up: what a recorded process started after the guard's last snapshot
dies with it (CI once saw two Ray processes alive 15 s after their driver was SIGKILLed)."""

import subprocess
import sys
import time
from pathlib import Path

from runners import ray_local

# A parent that starts a child only after it has been recorded (on a line on stdin), then waits.
PARENT = """
import subprocess, sys, time
sys.stdin.readline()
child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])
print(child.pid, flush=True)
time.sleep(120)
"""


def test_a_child_started_after_the_snapshot_is_killed_with_its_recorded_parent():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        recorded = {parent.pid: ray_local._start_time(parent.pid)}   # the guard's snapshot
        assert ray_local.descendants(parent.pid) == {}
        parent.stdin.write("go\n")
        parent.stdin.flush()
        child = int(parent.stdout.readline())
        child_start = ray_local._start_time(child)
        assert child_start is not None and child in ray_local.descendants(parent.pid)
        hit = ray_local._kill_recorded(recorded, grace_s=1.0)
        assert set(hit) == {parent.pid, child}
        parent.wait(timeout=10)
        deadline = time.time() + 10
        while ray_local._start_time(child) == child_start and time.time() < deadline:
            time.sleep(0.1)
        assert ray_local._start_time(child) != child_start
    finally:
        parent.kill()


def test_descendants_of_several_roots_is_one_tree_walk():
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) for _ in range(2)]
    try:
        import os
        found = ray_local.descendants_of([os.getpid()])
        assert {p.pid for p in procs} <= set(found)
        assert set(ray_local.descendants_of([p.pid for p in procs])) == set()
    finally:
        for p in procs:
            p.kill()
            p.wait()


# A driver with a guard: a child naming its (fake) Ray session, a plain fork (which copies the
# guard's pipe), then, on a line on stdin, an orphan naming the session (its parent exits at
# once: what a raylet's worker is once the raylet died with the driver). Prints the pids.
DRIVER = """
import os, subprocess, sys, time
from runners import ray_local
session = sys.argv[1]
guard = ray_local.start_guard()
child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)', session + '/sockets/a'])
forked = os.fork()
if forked == 0:
    time.sleep(120)
    os._exit(0)
print(child.pid, forked, flush=True)
sys.stdin.readline()
out = subprocess.run(['sh', '-c', f'{sys.executable} -c "import time; time.sleep(120)" '
                      f'--object-store-name={session}/sockets/plasma_store > /dev/null 2>&1 & echo $!'],
                     capture_output=True, text=True).stdout
print(int(out), flush=True)
time.sleep(120)
"""


def test_the_guard_ends_the_tree_and_the_orphans_of_its_ray_session_after_a_kill_9(tmp_path):
    session = str(tmp_path / "ray" / "session_2026-12-01_22-30-05_955123_4242")
    assert ray_local._SESSION.findall(f"--logs-dir={session}/logs") == [session]
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, session], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=str(Path(__file__).parents[2]))
    try:
        child, forked = map(int, driver.stdout.readline().split())
        time.sleep(1.5)                       # the guard's snapshots see the child and the fork
        driver.stdin.write("go\n")
        driver.stdin.flush()
        orphan = int(driver.stdout.readline())
        starts = {p: ray_local._start_time(p) for p in (child, forked, orphan)}
        assert None not in starts.values()
        assert orphan not in ray_local.descendants(driver.pid)
        driver.kill()                         # kill -9: no clean-up in the driver
        driver.wait(timeout=10)
        deadline = time.time() + 15
        while time.time() < deadline and any(ray_local._start_time(p) == s for p, s in starts.items()):
            time.sleep(0.2)
        assert [p for p, s in starts.items() if ray_local._start_time(p) == s] == []
    finally:
        driver.kill()
