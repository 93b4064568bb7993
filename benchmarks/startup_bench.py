"""Fixed cost of a small run: `ccforge curate --stages langid` and `ccforge stage langid` of one real
JSONL document, with a shared Prefect server running and without one.

Per command: time to first task (from launch until the stage's output directory appears: the
stage has started), end to end (launch to exit), and which heavy libraries the command imported.
Each mode gets a fresh $PREFECT_HOME whose database the warm-up run creates, so that no run pays
for a first database migration. `--repo` runs another checkout's code in the same environment, with
the same input and machine (before/after: `git clone /work/main /tmp/before && git -C /tmp/before
checkout HEAD~1`); a checkout without `ccforge server` gets the running server as $PREFECT_API_URL.
Given twice, the runs of the two checkouts alternate, so that both see the same load of a shared machine.

    .venv/bin/python benchmarks/startup_bench.py                                   # this checkout
    .venv/bin/python benchmarks/startup_bench.py --repo . --repo /tmp/before       # after and before
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flows.server import start_shared, stop_shared  # noqa: E402 (this checkout's launcher, whatever --repo is)

HANDBOOK = Path("/usr/share/doc/debian-handbook/html/en-US")
HEAVY = ("torch", "transformers", "prefect", "distributed", "pandas", "numba", "fasttext")
#: Prints the heavy modules a command imported (run in the command's process, at exit).
PROBE = ("import atexit, sys\n"
         f"atexit.register(lambda: print('IMPORTED', [m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr))\n"
         "from flows.cli import main\nsys.exit(main(sys.argv[1:]))\n")


def write_input(directory: Path) -> Path:
    """One handbook page as a one-line JSONL file."""
    page = sorted(HANDBOOK.glob("*.html"))[0]
    path = directory / "doc.jsonl"
    path.write_text(json.dumps({"id": "doc-0", "text": page.read_text(errors="replace")[:5000]}) + "\n")
    return path


def commands(source: Path, out: Path) -> dict[str, tuple[list[str], Path]]:
    """Each measured command and the directory whose appearance marks its first task."""
    return {"curate --stages langid": (["curate", "--input", str(source), "--workdir", str(out), "--stages",
                                        "langid"], out / "langid"),
            "stage langid": (["stage", "langid", "--input", str(source), "--output", str(out)], out)}


def run_once(repo: Path, args: list[str], first_task: Path, out: Path, env: dict[str, str]
             ) -> tuple[float, float, str]:
    """(seconds to first task, seconds end to end, heavy modules imported) of one run."""
    shutil.rmtree(out, ignore_errors=True)
    with tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-c", PROBE, *args], env=env, cwd=repo,
                                   stdout=subprocess.DEVNULL, stderr=stderr)
        first = None
        while process.poll() is None:
            if first is None and first_task.exists():
                first = time.perf_counter() - started
            time.sleep(0.01)
        wall = time.perf_counter() - started
        stderr.seek(0)
        text = stderr.read().decode(errors="replace")
    if process.returncode != 0 or first is None:
        raise RuntimeError(f"`ccforge {' '.join(args)}` failed in {repo}:\n{text[-2000:]}")
    imported = next((line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("IMPORTED")), "?")
    return first, wall, imported


@contextmanager
def server_mode(home: Path, shared: bool) -> Iterator[str | None]:
    """$PREFECT_HOME `home` with the shared server running there (its API URL) or not (None)."""
    if not shared:
        yield None
        return
    record, _ = start_shared(port=0, home=home)
    try:
        yield record.url
    finally:
        stop_shared(home)


def command_env(repo: Path, home: Path, shared_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env |= {"PYTHONPATH": str(repo), "PREFECT_HOME": str(home)}
    if shared_url and not (repo / "flows" / "cli" / "server.py").exists():  # it cannot find the server itself
        env["PREFECT_API_URL"] = shared_url
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, action="append", help="checkout to run (default this one; twice: "
                        "alternate two)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    repos = [repo.resolve() for repo in args.repo or [Path(__file__).resolve().parents[1]]]
    with tempfile.TemporaryDirectory() as tmp:
        source, out = write_input(Path(tmp)), Path(tmp) / "out"
        print(f"one document, median of {args.runs} runs (after one warm-up)\n")
        print("| checkout | command | shared server | first task s | end to end s | heavy modules imported |")
        print("|---|---|---|---:|---:|---|")
        for shared in (True, False):
            home = Path(tmp) / f"prefect-home-{'shared' if shared else 'none'}"
            with server_mode(home, shared) as url:
                for name, (command, first_task) in commands(source, out).items():
                    runs: dict[Path, list] = {repo: [] for repo in repos}
                    for _ in range(args.runs + 1):
                        for repo in repos:
                            runs[repo].append(run_once(repo, command, first_task, out, command_env(repo, home, url)))
                    for repo, (_warm_up, *measured) in runs.items():
                        first = statistics.median(r[0] for r in measured)
                        wall = statistics.median(r[1] for r in measured)
                        print(f"| {repo} | {name} | {'running' if shared else 'none'} | {first:.1f} | {wall:.1f} | "
                              f"{measured[-1][2]} |", flush=True)


if __name__ == "__main__":
    main()
