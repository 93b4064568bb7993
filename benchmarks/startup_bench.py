"""Fixed cost of a small run: `ccforge stage NAME` on 20 real documents, wall time against the stage's
own seconds (its `stats.json`), and which heavy libraries the command imported.

The difference between the two is start-up (imports, the LocalCluster) plus tear-down: what every
run pays before its first task. `--repo` runs another checkout's code in the same environment (for
a before/after figure: `git worktree add /tmp/before <commit>`), with the same input and machine.

    .venv/bin/python benchmarks/startup_bench.py                       # this checkout
    .venv/bin/python benchmarks/startup_bench.py --repo /tmp/before    # another checkout
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
from pathlib import Path

HANDBOOK = Path("/usr/share/doc/debian-handbook/html/en-US")
STAGES = {"fuzzy-dedup": [], "exact-dedup": [], "substring-dedup": ["--min-bytes", "200"]}
HEAVY = ("torch", "transformers", "prefect", "justext", "trafilatura", "fasttext", "pandas", "numba")
#: Prints the heavy modules a command imported (run in the command's process, at exit).
PROBE = ("import atexit, sys\n"
         f"atexit.register(lambda: print('IMPORTED', [m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr))\n"
         "from flows.cli import main\nsys.exit(main(sys.argv[1:]))\n")


def write_input(directory: Path, documents: int = 20) -> Path:
    pages = sorted(HANDBOOK.glob("*.html"))[:documents]
    path = directory / "docs.jsonl"
    with open(path, "w") as out:
        for i, page in enumerate(pages):
            out.write(json.dumps({"id": f"doc-{i}", "text": page.read_text(errors="replace")[:5000]}) + "\n")
    return path


def run_once(repo: Path, stage: str, flags: list[str], source: Path, out: Path) -> tuple[float, float, list[str]]:
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=str(repo))
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", PROBE, "stage", stage, "--input", str(source), "--output", str(out),
                             *flags], env=env, cwd=repo, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{stage} failed in {repo}:\n{result.stderr[-2000:]}")
    imported = next((line.split(" ", 1)[1] for line in result.stderr.splitlines() if line.startswith("IMPORTED")), "?")
    return wall, json.loads((out / "stats.json").read_text())["seconds"], [imported]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--stages", default=",".join(STAGES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = write_input(Path(tmp))
        print(f"repo {args.repo}, 20 documents, median of {args.runs} runs (after one warm-up)\n")
        print("| stage | wall s | stage s | start-up + tear-down s | heavy modules imported |")
        print("|---|---:|---:|---:|---|")
        for stage in args.stages.split(","):
            runs = [run_once(args.repo, stage, STAGES.get(stage, []), source, Path(tmp) / "out")
                    for _ in range(args.runs + 1)][1:]
            wall, seconds = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
            print(f"| {stage} | {wall:.2f} | {seconds:.2f} | {wall - seconds:.2f} | {runs[-1][2][0]} |")


if __name__ == "__main__":
    main()
