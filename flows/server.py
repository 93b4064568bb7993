"""Prefect API servers for ccforge commands: one module starts, health-checks and stops them.

Every command that runs a flow uses, in order: $PREFECT_API_URL (or a Prefect profile's api.url);
else the shared server of `ccforge server start`, when it answers; else a `prefect server start` of
its own that cannot outlive it. Prefect's own temporary (ephemeral) server is never used: it starts
no faster than a real one, and it is started without a tie to its parent, so a command killed with
SIGKILL leaves it running (prefect.server.api.server.SubprocessASGIServer).

The shared server records its pid and URL in $PREFECT_HOME/ccforge-server.json and logs to
$PREFECT_HOME/ccforge-server.log; its database is $PREFECT_HOME's, like any local Prefect server's.
This module imports Prefect only inside functions: `ccforge server status` and the command line's
parser stay light.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

#: How often a started server's scheduler creates the next runs of a schedule (Prefect's default: 60 s).
SCHEDULER_LOOP_SECONDS = 5
#: A first start migrates a new database: 15-20 s on 2 idle cores, several times that on busy ones.
STARTUP_TIMEOUT_SECONDS = 180
#: The shared server's port: its own, not Prefect's default 4200 (a user's own server may hold that).
DEFAULT_PORT = 4300
STATE_FILE = "ccforge-server.json"
LOG_FILE = "ccforge-server.log"
#: Servers started for one command log here (appended: a server that failed to start explains why).
COMMAND_LOG_FILE = "ccforge-command-server.log"
#: prctl(2) option: the signal the calling process gets when its parent thread dies (Linux).
PR_SET_PDEATHSIG = 1


class ServerFailed(RuntimeError):
    """A Prefect server did not start (its log says why)."""


def prefect_home() -> Path:
    """$PREFECT_HOME as Prefect resolves it (environment, .env or prefect.toml; default ~/.prefect)."""
    from prefect.settings import PREFECT_HOME

    return Path(PREFECT_HOME.value())


@dataclass(frozen=True)
class StartedServer:
    """A `prefect server start` process this process started."""

    process: subprocess.Popen
    url: str  # the API URL, http://127.0.0.1:PORT/api
    log_path: Path

    def wait_healthy(self, timeout: float = STARTUP_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while not answers(self.url):
            if self.process.poll() is not None:
                raise ServerFailed(f"the Prefect server exited with {self.process.returncode} on start; "
                                   f"see {self.log_path}")
            if time.monotonic() > deadline:
                raise ServerFailed(f"the Prefect server did not answer within {timeout:.0f} s; see {self.log_path}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_server(*, port: int, log_path: Path, tied: bool, home: Path | None = None) -> StartedServer:
    """Start `prefect server start` on 127.0.0.1:PORT (0: any free port) without waiting for it.

    It runs in a session of its own, so a Ctrl-C meant for the command does not reach it first.
    `tied`: the kernel kills it when this process dies, even by SIGKILL (PR_SET_PDEATHSIG; the
    parent is the calling thread, so call this from the thread that runs the command). `home`: its
    $PREFECT_HOME (its database), default this process's."""
    port = port or free_port()
    if not port_is_free(port):
        raise ServerFailed(f"port {port} on 127.0.0.1 is in use; choose another with --port")
    env = dict(os.environ, PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS=str(SCHEDULER_LOOP_SECONDS))
    # Machines without internet (and users who did not opt in) should not phone home.
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if home is not None:
        env["PREFECT_HOME"] = str(home)
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                   stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                   preexec_fn=_die_with_this_process() if tied else None)
    return StartedServer(process, f"http://127.0.0.1:{port}/api", log_path)


def _die_with_this_process() -> Callable[[], None]:
    """A preexec_fn that asks the kernel for SIGKILL when the parent dies. prctl is looked up here,
    before the fork: the child only calls it."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def set_death_signal() -> None:
        if prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before the prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return set_death_signal


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


#: Health checks go straight to 127.0.0.1, never through an $http_proxy.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def answers(api_url: str, timeout: float = 2) -> bool:
    """Whether a Prefect API answers its health check."""
    try:
        with _DIRECT.open(f"{api_url}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


# --- the shared server of `ccforge server start|stop|status` ---


@dataclass(frozen=True)
class ServerRecord:
    """What the state file says of the shared server. `created` (the process's start time) tells
    it from a later process that reuses its pid."""

    pid: int
    url: str
    created: float
    log: str

    def process(self) -> psutil.Process | None:
        """The server's process while it lives; None once it is gone (or its pid was reused)."""
        try:
            process = psutil.Process(self.pid)
            if abs(process.create_time() - self.created) < 1 and process.status() != psutil.STATUS_ZOMBIE:
                return process
        except psutil.NoSuchProcess:
            pass
        return None


@dataclass(frozen=True)
class SharedStatus:
    """The shared server: `record` while its process lives (`answering`: its API is up);
    `stale`: a state file whose process was gone, now removed."""

    record: ServerRecord | None
    answering: bool
    stale: ServerRecord | None = None

    @property
    def running(self) -> bool:
        return self.record is not None and self.answering


def state_path(home: Path | None = None) -> Path:
    return (home or prefect_home()) / STATE_FILE


def shared_status(home: Path | None = None) -> SharedStatus:
    """Read the state file; remove it when its process is gone."""
    path = state_path(home)
    try:
        record = ServerRecord(**json.loads(path.read_text()))
    except FileNotFoundError:
        return SharedStatus(None, False)
    except (ValueError, TypeError):  # not ours, or cut short by a crash: nothing to trust in it
        path.unlink(missing_ok=True)
        return SharedStatus(None, False)
    if record.process() is None:
        path.unlink(missing_ok=True)
        return SharedStatus(None, False, stale=record)
    return SharedStatus(record, answers(record.url))


def start_shared(*, port: int = DEFAULT_PORT, home: Path | None = None) -> tuple[ServerRecord, bool]:
    """Start the shared server and wait until it answers; returns it and whether it was started
    now (False: it was running already)."""
    status = shared_status(home)
    if status.record is not None:
        return status.record, False
    home = home or prefect_home()
    server = start_server(port=port, log_path=home / LOG_FILE, tied=False, home=home)
    record = ServerRecord(server.process.pid, server.url, psutil.Process(server.process.pid).create_time(),
                          str(server.log_path))
    path = state_path(home)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(record)))
    temporary.replace(path)  # written before the wait: a start that is interrupted leaves no unknown server
    try:
        server.wait_healthy()
    except BaseException:
        server.stop()
        path.unlink(missing_ok=True)
        raise
    return record, True


def stop_shared(home: Path | None = None, timeout: float = 20) -> ServerRecord | None:
    """Stop the shared server (SIGTERM, SIGKILL after `timeout` s); returns what was stopped."""
    status = shared_status(home)
    if status.record is None:
        return None
    process = status.record.process()
    if process is not None:
        process.terminate()
        _gone, alive = psutil.wait_procs([process], timeout=timeout)
        for survivor in alive:
            survivor.kill()
        psutil.wait_procs(alive, timeout=timeout)
    state_path(home).unlink(missing_ok=True)
    return status.record


# --- the Prefect API of one command ---


@contextmanager
def use_api(url: str) -> Iterator[str]:
    """Point this process (Prefect's settings) and the processes it starts (the environment) at `url`."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous


@contextmanager
def tied_server(*, port: int, log_path: Path, home: Path | None = None) -> Iterator[str]:
    """A server that lives while the block runs (and dies with this process); this process and
    those it starts use it."""
    server = start_server(port=port, log_path=log_path, tied=True, home=home)
    try:
        server.wait_healthy()
        with use_api(server.url) as url:
            try:
                yield url
            finally:
                send_pending_logs_and_events()
    finally:
        server.stop()


def send_pending_logs_and_events(timeout: float = 30) -> None:
    """Prefect sends run logs and events from background workers, at the latest when the interpreter
    exits; a server stopped before that makes each of them wait for connection timeouts (a minute
    and more). Send them now, while the server runs."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=timeout)
    EventsWorker.drain_all(timeout=timeout)


@contextmanager
def command_api() -> Iterator[str]:
    """The Prefect API for one command's flows (see the module docstring for the order); a server
    started here is stopped on exit and killed with this process. Prints which one, in one line."""
    from prefect.settings import PREFECT_API_URL

    configured = PREFECT_API_URL.value()
    if configured:
        print(f"Prefect API: {configured} (PREFECT_API_URL)", flush=True)
        yield configured
        return
    shared = shared_status()
    if shared.running:
        print(f"Prefect API: the shared server at {shared.record.url} (ccforge server)", flush=True)
        with use_api(shared.record.url) as url:
            yield url
        return
    port, log_path = free_port(), prefect_home() / COMMAND_LOG_FILE
    print(f"Prefect server (with its scheduler) at http://127.0.0.1:{port} for this command only, starting "
          f"(log: {log_path}); `ccforge server start` keeps one running so that later commands start in seconds",
          flush=True)
    with tied_server(port=port, log_path=log_path) as url:
        yield url
