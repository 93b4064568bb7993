"""The workdir lock: one curate run per workdir, the holder named, released however the holder ends."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from flows.errors import WorkdirBusy
from flows.workdir_lock import LOCK_FILE, workdir_lock

_HOLD = """
import sys, time
from pathlib import Path
from flows.workdir_lock import workdir_lock
with workdir_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_second_run_over_a_busy_workdir_stops_with_a_clear_message(tmp_path):
    with workdir_lock(tmp_path):
        with pytest.raises(WorkdirBusy, match=rf"^{tmp_path} is in use by another curate run "
                                              rf"\(pid {os.getpid()} on {socket.gethostname()}\)$"):
            with workdir_lock(tmp_path):
                pass
    with workdir_lock(tmp_path):  # released on exit
        pass


def test_the_lock_is_released_when_its_holder_is_killed(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).parents[2])
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(WorkdirBusy, match=rf"\(pid {holder.pid} on "):  # the other process's description
            with workdir_lock(tmp_path):
                pass
        assert (tmp_path / LOCK_FILE).read_text().startswith(f"pid {holder.pid} ")  # the contender wiped nothing
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with workdir_lock(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text() == f"pid {os.getpid()} on {socket.gethostname()}"
