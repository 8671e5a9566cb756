"""The sweep guard's clean-up: what a recorded process started after the guard's last snapshot
dies with it (CI once saw two Ray processes alive 15 s after their driver was SIGKILLed)."""

import subprocess
import sys
import time

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
