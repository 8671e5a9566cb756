"""Ray on one machine, kept to loopback and cleaned up: the local node's settings, a guard process
that kills what the sweep started when the driver dies, and a /proc reader of listening sockets.

Why each piece exists:
- Ray turns `_node_ip_address="127.0.0.1"` into the machine's routable address on Linux (it
  resolves "localhost" to "the address other nodes would use"), and every agent then binds its
  gRPC / HTTP / metrics servers on all interfaces. Ray keeps a node on loopback only when it
  believes clusters are unsupported, which the environment variable
  RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 tells it on Linux too: the node's address is then 127.0.0.1
  and the agents bind to it. `local_node_env()` sets that before Ray starts.
- Ray's own fate sharing kills the raylet and GCS with the driver, but their agents notice the
  raylet is gone only after a health-check timeout (about a minute after `kill -9` of the
  driver), listening all the while. `start_guard()` starts a small process in its own session
  that records the driver's process tree every half second and, once the driver is gone (its
  pipe closes: normal exit, exception, signal or kill -9), terminates whatever of that tree is
  still alive, and every process naming one of the tree's Ray session folders (a worker the
  raylet forked just before the driver died is an orphan of pid 1 by then, outside the tree:
  CI saw two such workers alive 15 s after a kill -9).
- `listening_sockets()` reads /proc/net/tcp{,6} and maps socket inodes to pids, for the sweep's
  own check and for the tests.

Library code never imports this module (runners only).
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Iterable

# Ray's knob that keeps a node's address on loopback (see the module docstring).
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
LOOPBACK = "127.0.0.1"


def local_node_env() -> None:
    """Set the environment that keeps a Ray node started by this process on 127.0.0.1.

    Must run before `ray` is imported anywhere in the process (the value is read at import)."""
    for key, value in LOOPBACK_ENV.items():
        os.environ[key] = value
    if "ray" in sys.modules:
        # Imported early (e.g. by a test): set the already-read constant as well.
        from ray._private import ray_constants
        ray_constants.ENABLE_RAY_CLUSTER = False


# ----------------------------------------------------------------------------- /proc sockets

@dataclass(frozen=True)
class Listener:
    """One listening TCP socket: local address (dotted or IPv6 text), port, owning pid, inode."""

    address: str
    port: int
    pid: int
    inode: int

    @property
    def loopback(self) -> bool:
        return self.address.startswith("127.") or self.address in ("::1", "::ffff:127.0.0.1") \
            or self.address.startswith("::ffff:127.")


def _decode(hex_addr: str) -> str:
    raw = bytes.fromhex(hex_addr)
    if len(raw) == 4:  # /proc/net/tcp stores the IPv4 address as a little-endian word
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    # IPv6: four little-endian 32-bit words
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def _listening_inodes() -> dict[int, tuple[str, int]]:
    out = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] != "0A":  # TCP_LISTEN
                continue
            addr, port = parts[1].split(":")
            out[int(parts[9])] = (_decode(addr), int(port, 16))
    return out


def _socket_inodes(pid: int) -> set[int]:
    found = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                found.add(int(target[8:-1]))
    except OSError:
        pass
    return found


def listening_sockets(pids: Iterable[int]) -> list[Listener]:
    """The listening TCP sockets (IPv4 and IPv6) held by any of `pids`."""
    table = _listening_inodes()
    out = []
    for pid in pids:
        for inode in _socket_inodes(pid):
            if inode in table:
                out.append(Listener(*table[inode], pid=pid, inode=inode))
    return out


# ----------------------------------------------------------------------------- process tree

def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (tells a live process from a reused pid)."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # exited, not yet reaped: nothing of it runs or listens
        return None
    return int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """pid -> start time of every live descendant of `root` (not `root` itself)."""
    return descendants_of([root])


def descendants_of(roots: Iterable[int]) -> dict[int, int]:
    """pid -> start time of every live descendant of any of `roots` (not the roots themselves,
    unless one descends from another); one pass over /proc."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = open(f"/proc/{name}/stat").read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4 of proc(5): the parent
        children.setdefault(ppid, []).append(int(name))
    out, todo = {}, [c for root in roots for c in children.get(root, [])]
    while todo:
        pid = todo.pop()
        start = _start_time(pid)
        if start is not None and pid not in out:
            out[pid] = start
            todo.extend(children.get(pid, []))
    return out


def _kill_recorded(recorded: dict[int, int], grace_s: float = 3.0) -> list[int]:
    """SIGTERM then SIGKILL every recorded pid that is still the same process, and what those
    processes started since they were recorded (a Ray worker forked between two of the guard's
    snapshots; one was seen alive 15 s after its driver was killed); the pids hit."""
    recorded = {**recorded, **descendants_of(p for p, s in recorded.items() if _start_time(p) == s)}
    alive = [pid for pid, start in recorded.items() if _start_time(pid) == start]
    for pid in alive:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.time() + grace_s
    while time.time() < deadline and any(_start_time(p) == recorded[p] for p in alive):
        time.sleep(0.1)
    # Started during the grace by a process that ignored SIGTERM: killed with it.
    late = descendants_of(p for p in alive if _start_time(p) == recorded[p])
    recorded.update(late)
    alive += [p for p in late if p not in alive]
    for pid in alive:
        if _start_time(pid) == recorded[pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return alive


# A Ray node's session folder (`<temp dir>/session_<date>_<time>_<micros>_<pid>`), which every
# process of that node names on its command line (logs, sockets, the object store).
_SESSION = re.compile(r"[^\s=,'\"]*/session_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d+_\d+")


def _cmdline(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def ray_sessions(pids: Iterable[int]) -> set[str]:
    """The Ray session folders the command lines of `pids` name."""
    return {m for pid in pids for m in _SESSION.findall(_cmdline(pid))}


def processes_naming(needles: set[str]) -> dict[int, int]:
    """pid -> start time of every live process whose command line contains one of `needles`."""
    out: dict[int, int] = {}
    for name in os.listdir("/proc") if needles else ():
        if name.isdigit() and any(n in _cmdline(int(name)) for n in needles):
            start = _start_time(int(name))
            if start is not None:
                out[int(name)] = start
    return out


def guard_main(driver_pid: int, pipe_fd: int, period_s: float = 0.5) -> int:
    """The guard process: snapshot the driver's tree until its pipe closes (or the driver is
    gone while a forked child still holds the pipe), then end that tree and its Ray sessions."""
    recorded: dict[int, int] = {}
    sessions: set[str] = set()
    driver_start = _start_time(driver_pid)
    while True:
        ready, _, _ = select.select([pipe_fd], [], [], period_s)
        if ready and not os.read(pipe_fd, 4096):
            break  # EOF: the driver is gone (or closed the pipe at the end of its sweep)
        if _start_time(driver_pid) != driver_start:
            break
        for pid, start in descendants(driver_pid).items():
            if pid != os.getpid() and recorded.get(pid) != start:
                recorded[pid] = start
                sessions |= ray_sessions([pid])
    # The driver's children that Ray shut down cleanly are already gone; end the rest, and the
    # processes of its Ray sessions that were started after the last snapshot.
    recorded.update(processes_naming(sessions))
    recorded.pop(os.getpid(), None)
    hit = _kill_recorded(recorded)
    if hit:
        print(f"sweep guard: ended {len(hit)} Ray process(es) left behind by driver {driver_pid}",
              file=sys.stderr, flush=True)
    return 0


class Guard:
    """Handle of the guard process; `close()` (at the end of a sweep) lets it clean up now."""

    def __init__(self, proc: subprocess.Popen, write_fd: int):
        self.proc, self._fd = proc, write_fd

    def _close_in_fork(self) -> None:
        if self._fd is not None:   # the child's copy; the parent's stays open
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def close(self, wait_s: float = 10.0) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            try:
                self.proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                pass


def start_guard() -> Guard:
    """Start the guard of this process's tree (before Ray starts its processes).

    The guard runs in its own session, so the terminal's Ctrl-C and a scheduler's signal to the
    driver's process group do not reach it; it exits by itself once it has cleaned up."""
    read_fd, write_fd = os.pipe()
    os.set_inheritable(read_fd, True)
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from runners.ray_local import guard_main; "
                               "sys.exit(guard_main(int(sys.argv[1]), int(sys.argv[2])))",
         str(os.getpid()), str(read_fd)],
        pass_fds=(read_fd,), start_new_session=True, close_fds=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
    os.close(read_fd)
    # Ray's children must not inherit the write end, or the guard would wait for them too; a
    # plain fork (no exec) copies it regardless, so forked children close their copy.
    os.set_inheritable(write_fd, False)
    guard = Guard(proc, write_fd)
    os.register_at_fork(after_in_child=guard._close_in_fork)
    return guard
