"""One curate run per workdir: WORKDIR/.lock, held for the whole run.

filelock takes the lock: an flock, which the OS drops when the holding process dies, however it
dies. What it does not do is say who holds it: the holder writes its pid and host into the file
(filelock's `on_acquired` hook, which also keeps filelock from falling back to a marker file
where flock is missing: such a filesystem fails with the OS's error), and a second run reads them
into its WorkdirBusy. filelock 4 opens the file without truncating it, so a contender never
wipes the holder's description (3.x did).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from flows.errors import WorkdirBusy

LOCK_FILE = ".lock"


@contextmanager
def workdir_lock(workdir: Path) -> Iterator[None]:
    """Hold WORKDIR/.lock for the run: a second run over the same workdir (a scheduled one and a
    manual one) stops at once with WorkdirBusy naming the holder, instead of racing."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / LOCK_FILE
    lock = FileLock(path, timeout=0, on_acquired=describe_holder)
    try:
        lock.acquire()
    except Timeout:
        raise WorkdirBusy(f"{workdir} is in use by another curate run ({holder(path)})") from None
    try:
        yield
    finally:
        lock.release()


def describe_holder(fd: int) -> None:
    """filelock's `on_acquired` hook: this process's pid and host, in place of the last holder's."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)


def holder(path: Path) -> str:
    """What the holder wrote into the lock file ('unknown' before it has written)."""
    try:
        return path.read_text(errors="replace").strip() or "unknown"
    except OSError:
        return "unknown"
