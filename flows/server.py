"""A Prefect server for scheduled runs. Prefect's in-process (ephemeral) API runs no scheduler, so a
schedule with no $PREFECT_API_URL gets a real `prefect server start` on 127.0.0.1, for as long as
the schedule is served; its database lives in $PREFECT_HOME like any local Prefect server's."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

#: How often the started server's scheduler creates the next runs (Prefect's default: 60 s).
SCHEDULER_LOOP_SECONDS = 5
STARTUP_TIMEOUT_SECONDS = 180


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def prefect_api() -> Iterator[str]:
    """The API URL to use: $PREFECT_API_URL when set, else that of a server started here (and
    stopped on exit)."""
    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    log_path = Path(PREFECT_HOME.value()) / "ccforge-server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS=str(SCHEDULER_LOOP_SECONDS))
    with open(log_path, "ab") as log_file:
        server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                   "--port", str(port)], stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                  start_new_session=True)
    try:
        _wait_healthy(url, server, log_path)
        print(f"Prefect server (with its scheduler) at {url.removesuffix('/api')}  log: {log_path}", flush=True)
        os.environ["PREFECT_API_URL"] = url  # for the flow-run processes the runner starts
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_healthy(url: str, server: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the Prefect server exited with {server.returncode} on start; see {log_path}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the Prefect server did not answer within {STARTUP_TIMEOUT_SECONDS} s; see {log_path}")
