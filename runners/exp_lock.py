"""One sweep per experiment folder at a time: `<exp>/sweep.lock`, held with `fcntl.flock` for the
life of the driver and naming its holder (pid, host, start time).

Why flock and a record together: the kernel releases a flock when its holder dies, however it
dies (kill -9 included), so a dead holder can never keep the folder locked; the record says who
holds a live lock, and, when the lock is free but the record names another process, that this
lock was left stale by it (reported, then taken over). On NFS (v4, Linux >= 2.6.12) flock is
carried out as a POSIX lock on the server, so two drivers on two hosts exclude each other as
well; a filesystem without locking makes `acquire` fail with a message rather than run unlocked.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

LOCK_NAME = "sweep.lock"


class SweepLocked(RuntimeError):
    """Another live sweep holds the experiment folder."""


class ExperimentLock:
    """The held lock of one experiment folder; `release()` (or process exit) frees it."""

    def __init__(self, path: Path, fd: int, stale: dict | None):
        self.path, self._fd = path, fd
        self.stale = stale  # the record of a dead holder this lock was taken over from, or None

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)  # a released lock names nobody
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
                self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _read_record(fd: int) -> dict | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return {"unreadable": raw[:200].decode(errors="replace")}


def describe(record: dict | None) -> str:
    if not record:
        return "an unknown process"
    if "pid" not in record:
        return f"an unreadable lock record ({record.get('unreadable', '')!r})"
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(record.get("started", 0)))
    return f"pid {record['pid']} on host {record.get('host', '?')} (started {started})"


def acquire(exp_dir: Path) -> ExperimentLock:
    """Lock `exp_dir` for this process or raise SweepLocked naming the holder."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    path = exp_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        holder = _read_record(fd)
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
            raise SweepLocked(
                f"{exp_dir} is in use by another sweep: {describe(holder)} holds {path}. Wait for "
                f"it to end (or stop it), or give this sweep another --name.") from None
        raise SweepLocked(f"cannot lock {path} ({err.strerror}): this filesystem does not "
                          f"support file locks; put Sweep.storage_path on one that does") from None
    previous = _read_record(fd)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    stale = previous if previous and previous.get("pid") != me["pid"] else None
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(me).encode())
    os.fsync(fd)
    return ExperimentLock(path, fd, stale)
