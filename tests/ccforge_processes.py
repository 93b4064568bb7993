"""The `ccforge` command line in a subprocess of its own session (so that a test can SIGKILL it with
its Dask workers), and the comparisons of curate outputs the process tests share."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pyarrow.parquet as pq

from dask_processes import kill_session

#: Every curation stage that needs no trained model.
MODEL_FREE_STAGES = "extract,langid,exact-dedup,fuzzy-dedup,heuristics"


def ccforge_command(*args: str) -> list[str]:
    """The `ccforge` console script of this environment, else `python -m flows.cli`."""
    script = Path(sys.executable).with_name("ccforge")
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "flows.cli", *args]


def ccforge_env(**changes: str | None) -> dict[str, str]:
    """This environment, unbuffered (with the session server's PREFECT_API_URL under the `prefect_api`
    fixture), with `changes` (None: unset)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def curate_args(inputs: Path, workdir: Path, *extra: str) -> list[str]:
    return ["curate", "--input", str(inputs), "--workdir", str(workdir), "--stages", MODEL_FREE_STAGES,
            "--workers", "1", *extra]


@dataclass(frozen=True)
class StartedRun:
    """A `ccforge` process in a session of its own, its stdout and stderr in unnamed files (no pipe
    fills up while it runs)."""

    process: subprocess.Popen
    stdout: IO[bytes]
    stderr: IO[bytes]

    def output(self) -> tuple[str, str]:
        texts = []
        for stream in (self.stdout, self.stderr):
            stream.seek(0)
            texts.append(stream.read().decode(errors="replace"))
        return texts[0], texts[1]

    def finish(self, timeout: float = 300) -> subprocess.CompletedProcess:
        try:
            self.process.wait(timeout=timeout)
        finally:
            kill_session(self.process)  # after a timeout; or worker processes that outlived it
        return subprocess.CompletedProcess(self.process.args, self.process.returncode, *self.output())


def start_ccforge(args: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> StartedRun:
    stdout, stderr = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    process = subprocess.Popen(ccforge_command(*args), cwd=cwd, env=env or ccforge_env(), stdout=stdout,
                               stderr=stderr, start_new_session=True)
    return StartedRun(process, stdout, stderr)


def run_ccforge(args: list[str], *, cwd: Path, timeout: float = 300, env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess:
    return start_ccforge(args, cwd=cwd, env=env).finish(timeout)


def kill_when(args: list[str], ready: Callable[[], bool], what: str, *, cwd: Path, timeout: float = 300) -> None:
    """Start `ccforge ARGS`, poll the filesystem until `ready()`, then SIGKILL its whole session.
    Fails (never passes vacuously) when the run ends or times out before `what` happened."""
    run = start_ccforge(args, cwd=cwd)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if run.process.poll() is not None or time.monotonic() > deadline:
                ended = f"exited with {run.process.returncode}" if run.process.poll() is not None else "timed out"
                raise AssertionError(f"ccforge {ended} before {what}; its output:\n" + "".join(run.output())[-3000:])
            time.sleep(0.02)
    finally:
        kill_session(run.process)


def file_versions(root: Path, pattern: str = "**/*") -> dict[str, tuple[int, int]]:
    """(inode, mtime_ns) of the files under `root` matching `pattern`: a rewritten file changes both
    (shards are written under a temporary name, then renamed)."""
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(root.glob(pattern)) if p.is_file()}


def stage_counts(workdir: Path) -> list[dict]:
    """WORKDIR/stats.json without the timings."""
    return [{k: v for k, v in stage.items() if k != "seconds"}
            for stage in json.loads((workdir / "stats.json").read_text())["stages"]]


def assert_same_curated(workdir: Path, reference: Path) -> None:
    """Shard for shard, the same curated rows (every column, in order) and the same counts."""
    shards = sorted(p.name for p in (reference / "curated").glob("part-*.parquet"))
    assert shards and sorted(p.name for p in (workdir / "curated").glob("part-*.parquet")) == shards
    for name in shards:
        got, want = pq.read_table(workdir / "curated" / name), pq.read_table(reference / "curated" / name)
        assert got["id"].to_pylist() == want["id"].to_pylist(), name
        assert got.equals(want), name
    assert stage_counts(workdir) == stage_counts(reference)
