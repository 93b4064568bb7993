"""`dask scheduler` and `dask worker` as separate processes on 127.0.0.1, as on a real cluster
(imported by tests; shared helpers live in uniquely named modules, never in conftest.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from distributed import Client


def dask_command(*args: str) -> list[str]:
    """The `dask` command of this environment: its console script, else `python -m dask`."""
    script = Path(sys.executable).with_name("dask")
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "dask", *args]


@contextmanager
def dask_cluster_processes(directory: Path, *, workers: int = 2, timeout: float = 120) -> Iterator[str]:
    """Start `dask scheduler` and `workers` one-thread `dask worker` processes on 127.0.0.1; yield the
    scheduler address once every worker has joined; stop them all on exit. Logs go to `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    scheduler_file = directory / "scheduler.json"
    processes: list[subprocess.Popen] = []
    try:
        processes.append(_start(dask_command("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                             "--scheduler-file", str(scheduler_file)), directory / "scheduler.log"))
        address = _scheduler_address(scheduler_file, processes[0], timeout)
        for i in range(workers):
            processes.append(_start(dask_command(
                "worker", address, "--host", "127.0.0.1", "--name", f"worker-{i}", "--nthreads", "1", "--no-dashboard",
                "--local-directory", str(directory / f"worker-{i}")), directory / f"worker-{i}.log"))
        with Client(address, timeout=timeout) as client:
            client.wait_for_workers(workers, timeout=timeout)
        yield address
    finally:
        _stop(processes)


def _start(command: list[str], log_path: Path) -> subprocess.Popen:
    # A session of its own: stopping it reaches the nanny's worker process too.
    with open(log_path, "wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=log_path.parent,
                                start_new_session=True)


def _scheduler_address(scheduler_file: Path, scheduler: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        if scheduler_file.exists():
            try:
                return json.loads(scheduler_file.read_text())["address"]
            except (json.JSONDecodeError, KeyError):
                pass  # written but not yet complete
        if scheduler.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"dask scheduler did not start: see {scheduler_file.parent / 'scheduler.log'}")
        time.sleep(0.1)


def _stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM (workers first, then the scheduler); SIGKILL what is left of a session after 30 s."""
    for process in reversed(processes):
        _signal_group(process.pid, signal.SIGTERM)
    for process in reversed(processes):
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        kill_session(process)


def kill_session(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGKILL a process started with `start_new_session=True` and every process of its session
    (a LocalCluster's nanny and worker processes, Prefect's temporary server), and reap it."""
    _signal_group(process.pid, signal.SIGKILL)
    process.wait(timeout=timeout)
    deadline = time.monotonic() + timeout
    while survivors := session_members(process.pid):
        # Members that moved to a process group of their own are still in the session.
        for pid in survivors:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {survivors} of session {process.pid} survived SIGKILL")
        time.sleep(0.05)


def session_members(session: int) -> list[int]:
    """Live (not zombie) processes of a session, from /proc/PID/stat (Linux)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        state, _ppid, _pgrp, sid = text[text.rindex(")") + 2:].split()[:4]
        if int(sid) == session and state not in "ZX":
            members.append(int(stat.parent.name))
    return members


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass
