"""The extract stage end to end, this checkout against an earlier one, alternating runs.

Each run is `ccforge stage extract` in its own process (a fresh 2-worker LocalCluster, so the
workers' imports and lid.176 load are inside the figure, as in a curate run's funnel), and the
figure is the stage's `seconds` from its stats.json. Runs alternate before/after so both see the
same machine load; the documents out and the drop counts must be equal in every pair.

    git archive 6883a71 | (mkdir -p /tmp/before && tar -x -C /tmp/before)   # before the fast jusText
    .venv/bin/ccforge sample-corpus /tmp/crawl --max-records 6000
    .venv/bin/python benchmarks/extract_stage_ab.py /tmp/crawl --before /tmp/before [--pairs 3]
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_stage(code_dir: Path, crawl: str, out: Path) -> dict:
    """One `stage extract` run with `code_dir`'s packages first on the path; its stats.json."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(code_dir)}
    # from a directory without the packages, so that PYTHONPATH decides which code runs
    subprocess.run([sys.executable, "-m", "flows.cli", "stage", "extract", "--input", crawl, "--output", str(out)],
                   cwd=tempfile.gettempdir(), env=env, check=True, capture_output=True)
    return json.loads((out / "stats.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("crawl", help="a directory of WARC files")
    parser.add_argument("--before", required=True, help="an earlier checkout's source tree (git archive REV)")
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="extract-ab-"))
    ratios, seconds = [], {"before": [], "after": []}
    print("| pair | before s | after s | x faster | docs out | drops |\n|---:|---:|---:|---:|---:|---|")
    for pair in range(1, args.pairs + 1):
        before = run_stage(Path(args.before), args.crawl, work / "before")
        after = run_stage(REPO, args.crawl, work / "after")
        if (before["docs_out"], before["dropped"]) != (after["docs_out"], after["dropped"]):
            raise SystemExit(f"pair {pair}: the outputs differ: before {before['docs_out']} out {before['dropped']}, "
                             f"after {after['docs_out']} out {after['dropped']}")
        seconds["before"].append(before["seconds"])
        seconds["after"].append(after["seconds"])
        ratios.append(before["seconds"] / after["seconds"])
        drops = ", ".join(f"{reason} {count:,}" for reason, count in sorted(after["dropped"].items()))
        print(f"| {pair} | {before['seconds']:.2f} | {after['seconds']:.2f} | {ratios[-1]:.2f} | "
              f"{after['docs_out']:,} | {drops} |", flush=True)
    print(f"\nmedian {statistics.median(ratios):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f}); "
          f"best {min(seconds['before']):.2f} s against {min(seconds['after']):.2f} s = "
          f"{min(seconds['before']) / min(seconds['after']):.2f}x")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
