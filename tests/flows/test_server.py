"""Start-up: `ccforge server start|status|stop`, the shared server used by curate, a per-command
server that dies with its command even under SIGKILL, errors reported before any server starts, and
the stage command path free of torch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from ccforge_processes import ccforge_env, run_ccforge, start_ccforge
from flows.server import COMMAND_LOG_FILE, STATE_FILE, shared_status, stop_shared


@pytest.fixture
def one_document(tmp_path: Path, handbook_pages) -> Path:
    path = tmp_path / "doc.jsonl"
    path.write_text(json.dumps({"id": "d0", "text": handbook_pages["en-US"][3].read_text()[:4000]}) + "\n")
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A $PREFECT_HOME of the test's own, where no shared server runs yet."""
    return tmp_path / "prefect-home"


def _env(home: Path) -> dict[str, str]:
    """`ccforge` with `home` as $PREFECT_HOME and no PREFECT_API_URL: it finds a server by itself."""
    return ccforge_env(PREFECT_HOME=str(home), PREFECT_API_URL=None)


def _ccforge(home: Path, *args: str) -> subprocess.CompletedProcess:
    result = run_ccforge(list(args), cwd=home.parent, env=_env(home))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _cmdline(process: psutil.Process) -> list[str]:
    """The command line, or [] for a child that has just exited (a zombie until reaped) or gone."""
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _wait_gone(pid: int, timeout: float = 20) -> bool:
    try:
        psutil.Process(pid).wait(timeout=timeout)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        return False
    return True


def test_start_status_stop_round_trip_and_a_curate_on_the_shared_server(home, one_document):
    try:
        _round_trip(home, one_document)
    finally:
        stop_shared(home)  # after a failure: the server outlives the commands by design


def _round_trip(home: Path, one_document: Path) -> None:
    started = _ccforge(home, "server", "start", "--port", "0").stdout
    record = json.loads((home / STATE_FILE).read_text())
    assert started.startswith(f"started: {record['url']} (pid {record['pid']}, up ")
    assert "prefect" in " ".join(psutil.Process(record["pid"]).cmdline())
    assert httpx.get(f"{record['url']}/health", timeout=10).status_code == 200
    assert _ccforge(home, "server", "status").stdout.startswith(f"running: {record['url']} (pid {record['pid']}")
    again = _ccforge(home, "server", "start", "--port", "0").stdout
    assert again.startswith(f"already running: {record['url']} (pid {record['pid']}")

    workdir = home.parent / "work"
    curated = _ccforge(home, "curate", "--input", str(one_document), "--workdir", str(workdir), "--stages", "langid",
                       "--workers", "1").stdout
    assert f"Prefect API: the shared server at {record['url']} (ccforge server)" in curated
    runs = httpx.post(f"{record['url']}/flow_runs/filter", json={}, timeout=10).json()
    assert [(run["id"], run["state_type"]) for run in runs] == [
        (json.loads((workdir / "runs.jsonl").read_text())["flow_run"], "COMPLETED")]

    assert _ccforge(home, "server", "stop").stdout.strip() == f"stopped: pid {record['pid']} ({record['url']})"
    assert _wait_gone(record["pid"], timeout=1) and not (home / STATE_FILE).exists()
    assert _ccforge(home, "server", "status").stdout.strip() == "not running"
    assert _ccforge(home, "server", "stop").stdout.strip() == "not running"


def test_a_state_file_of_a_dead_or_reused_pid_is_detected_and_removed(home):
    home.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    created = psutil.Process(dead.pid).create_time()
    dead.wait()
    state = {"pid": dead.pid, "url": "http://127.0.0.1:9/api", "created": created, "log": "x.log"}
    (home / STATE_FILE).write_text(json.dumps(state))
    status = shared_status(home)
    assert status.stale is not None and status.stale.pid == dead.pid and not status.running
    assert not (home / STATE_FILE).exists()

    # A live pid that started at another time is another process now (the pid was reused).
    (home / STATE_FILE).write_text(json.dumps(state | {"pid": os.getpid()}))
    result = _ccforge(home, "server", "status")
    assert result.stdout.splitlines() == [f"removed the state file of a server that is gone (pid {os.getpid()})",
                                          "not running"]
    assert not (home / STATE_FILE).exists()


def test_a_curate_killed_with_sigkill_leaves_no_prefect_server_behind(home, one_document):
    workdir = home.parent / "work"
    run = start_ccforge(["curate", "--input", str(one_document), "--workdir", str(workdir), "--stages", "langid",
                         "--workers", "1"], cwd=home.parent, env=_env(home))
    try:
        servers: list[psutil.Process] = []
        deadline = time.monotonic() + 300
        while not (servers and (workdir / "langid").exists()):  # the server answers: the flow runs its task
            if run.process.poll() is not None:  # (its output is read only once it has ended)
                raise AssertionError("curate ended before its first task:\n" + "".join(run.output()))
            assert time.monotonic() < deadline, "timed out waiting for the first task"
            children = psutil.Process(run.process.pid).children()
            servers = [p for p in children if "server" in _cmdline(p) and "prefect" in " ".join(_cmdline(p))]
            time.sleep(0.05)
        os.kill(run.process.pid, signal.SIGKILL)  # the command alone, not its session: nobody stops the server
        run.process.wait()
        assert "for this command only" in run.output()[0]
        assert all(_wait_gone(server.pid) for server in servers), [_cmdline(s) for s in servers if s.is_running()]
    finally:
        run.finish(timeout=30)  # the Dask workers that are left
        for server in servers:
            if server.is_running():
                server.kill()


def test_a_bad_config_or_input_fails_before_any_server_starts(home, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("langid:\n  min_scor: 0.5\n")
    for args, reason in ((["curate", str(config), "--input", str(tmp_path)], "bad.yaml: langid.min_scor"),
                         (["curate", "--input", str(tmp_path / "missing.jsonl")], "missing.jsonl: no such file")):
        started = time.monotonic()
        result = run_ccforge(args, cwd=tmp_path, env=_env(home))
        assert result.returncode == 2 and reason in result.stderr, result.stderr
        assert time.monotonic() - started < 15  # a server takes longer than that to start on 2 cores
        assert "Prefect" not in result.stdout and not (home / COMMAND_LOG_FILE).exists()


def test_the_stage_command_of_a_non_torch_stage_loads_neither_torch_nor_transformers(tmp_path, handbook_pages):
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps({"id": f"d{i}", "text": page.read_text()[:3000]}) + "\n"
                              for i, page in enumerate(handbook_pages["en-US"][:6])))
    probe = ("import sys\nfrom flows.cli.main import main\n"
             f"assert main(['stage', 'fuzzy-dedup', '--input', {str(source)!r}, '--output', "
             f"{str(tmp_path / 'out')!r}, '--workers', '1']) == 0\n"
             "print(sorted(m for m in ('torch', 'transformers', 'prefect') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                            cwd=Path(__file__).parents[2])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "out" / "_SUCCESS").exists()
