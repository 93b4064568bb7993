"""Does curation scale? `ccforge curate` on 100k and 1M documents: docs/s, peak RSS and disk per stage.

For every size, a JSONL corpus made from the machine's real documents with known rates of exact
copies, near copies and shared boilerplate (`scale_corpus.py`; cached) goes through
`ccforge curate` on a 2-worker LocalCluster. A sampler walks the command's process tree every
0.2 s and keeps, per stage, the peak RSS of the driver (the ccforge process itself, which also
hosts the Dask scheduler and the nannies), of each Dask worker (the spawned multiprocessing
children) and of Prefect's temporary API server (a uvicorn child, reported apart), and the peak
bytes on disk of the stage's directory (working files included). Workers live through every
stage, so a stage's worker peak includes what earlier stages left allocated. The targets are
those of the scale issue: every stage's docs/s at the largest size >= 0.8x its docs/s at the
smallest, the driver's peak RSS <= 1.1x and < 1 GiB, worker peaks that do not grow with the corpus.

    .venv/bin/python benchmarks/scale_bench.py                        # 100k and 1M documents
    .venv/bin/python benchmarks/scale_bench.py --sizes 20000,100000   # a quick look
    .venv/bin/python benchmarks/scale_bench.py --stages exact-dedup,fuzzy-dedup,heuristics
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from scale_corpus import CorpusSpec, build_corpus

from flows.engine.stage_dir import read_stage_stats, stage_finished

STAGES = "exact-dedup,fuzzy-dedup,substring-dedup,heuristics"
#: The curate config the benchmark writes, per stage; a section is written only when its stage
#: runs (the config rejects sections it does not know). Substring dedup needs a unit: bytes.
STAGE_YAML = {
    "substring-dedup": "substring_dedup:\n  min_bytes: 200\n  tokenizer: null\n",
}
SAMPLE_SECONDS = 0.2
DISK_EVERY = 5  # samples between two walks of the running stage's directory
#: The issue's targets, largest size against smallest.
MIN_SPEED_RATIO, MAX_DRIVER_RATIO, MAX_DRIVER_GIB, MAX_WORKER_RATIO = 0.8, 1.1, 1.0, 1.1
GIB = 2**30
DRIVER, PREFECT, OTHER = "driver", "prefect-server", "other"


def role(process: psutil.Process, root_pid: int, prefect_pids: set[int]) -> str:
    """driver, prefect-server (uvicorn and its children), worker:<pid> (spawned by a nanny), other."""
    if process.pid == root_pid:
        return DRIVER
    cmdline = " ".join(process.cmdline())
    if "prefect.server" in cmdline or process.ppid() in prefect_pids:
        prefect_pids.add(process.pid)
        return PREFECT
    if "spawn_main" in cmdline:  # multiprocessing.spawn: how a Dask Nanny starts its worker
        return f"worker:{process.pid}"
    return OTHER  # e.g. multiprocessing's resource tracker


def disk_bytes(path: Path) -> int:
    """Bytes allocated on disk under `path` (hard links counted once per walk)."""
    total, seen = 0, set()
    for directory, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):  # a temp file renamed under our feet
                info = os.lstat(os.path.join(directory, name))
                if info.st_ino not in seen:
                    seen.add(info.st_ino)
                    total += info.st_blocks * 512
    return total


class TreeSampler(threading.Thread):
    """Per stage: peak RSS of every role, peak disk of the stage directory, first and last time seen."""

    def __init__(self, pid: int, run_dir: Path, stages: list[str]) -> None:
        super().__init__(daemon=True)
        self.pid, self.run_dir, self.stages = pid, run_dir, stages
        self.rss: dict[str, dict[str, int]] = {}
        #: The same peaks of anonymous memory (RssAnon: heap, arrays) alone. RSS also counts the pages
        #: of memory-mapped working files a task touched: page cache the kernel reclaims at will.
        self.anon: dict[str, dict[str, int]] = {}
        self.disk: dict[str, int] = {}
        self.seen: dict[str, list[float]] = {}
        self.cmdlines: dict[str, str] = {}
        self.done = threading.Event()

    def current_stage(self) -> str:
        started = [s for s in self.stages if (self.run_dir / s).is_dir()]
        if not started:
            return "startup"
        if stage_finished(self.run_dir / started[-1]) and started[-1] == self.stages[-1]:
            return "finish"
        return started[-1]

    def run(self) -> None:
        roles: dict[int, str] = {}
        prefect_pids: set[int] = set()
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(self.pid)
            for tick in range(1 << 62):
                if self.done.is_set():
                    break
                stage = self.current_stage()
                now = time.perf_counter()
                self.seen.setdefault(stage, [now, now])[1] = now
                peaks = self.rss.setdefault(stage, {})
                anon_peaks = self.anon.setdefault(stage, {})
                tree = 0
                for member in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):  # a child may exit between listing and reading
                        if member.pid not in roles:
                            roles[member.pid] = role(member, self.pid, prefect_pids)
                            key = roles[member.pid] if ":" in roles[member.pid] else f"{roles[member.pid]}:{member.pid}"
                            self.cmdlines[key] = " ".join(member.cmdline())[:300]
                        rss = member.memory_info().rss
                        peaks[roles[member.pid]] = max(peaks.get(roles[member.pid], 0), rss)
                        anon_peaks[roles[member.pid]] = max(anon_peaks.get(roles[member.pid], 0), anon_bytes(member.pid))
                        tree += rss
                peaks["tree"] = max(peaks.get("tree", 0), tree)
                if stage in self.stages and tick % DISK_EVERY == 0:
                    self.disk[stage] = max(self.disk.get(stage, 0), disk_bytes(self.run_dir / stage))
                time.sleep(SAMPLE_SECONDS)


def anon_bytes(pid: int) -> int:
    """RssAnon of a process (Linux /proc; 0 elsewhere)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def write_config(path: Path, stages: list[str]) -> Path:
    path.write_text("".join(STAGE_YAML.get(s, "") for s in stages) or "{}\n")
    return path


def ccforge_command() -> list[str]:
    script = Path(sys.executable).parent / "ccforge"
    return [str(script)] if script.exists() else [sys.executable, "-m", "flows.cli"]


def run_curate(corpus_dir: Path, run_dir: Path, stages: list[str], workers: int) -> dict:
    """Run `ccforge curate` on the corpus, sampling its process tree; returns the measurements."""
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    config = write_config(run_dir.with_suffix(".yaml"), stages)
    command = [*ccforge_command(), "curate", str(config), "--input", str(corpus_dir), "--workdir", str(run_dir),
               "--stages", ",".join(stages), "--workers", str(workers)]
    log_path = run_dir.with_suffix(".log")
    started = time.perf_counter()
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
        sampler = TreeSampler(process.pid, run_dir, stages)
        sampler.start()
        process.wait()
        sampler.done.set()
        sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{log_path.read_text()[-3000:]}")
    result = {"command": command, "log": str(log_path), "wall_seconds": time.perf_counter() - started,
              "processes": sampler.cmdlines, "stages": {}, "peak_rss": {}}
    for name in stages:
        stats = read_stage_stats(run_dir / name)
        first, last = sampler.seen.get(name, [0.0, 0.0])
        result["stages"][name] = {
            **{k: stats[k] for k in ("docs_in", "docs_out", "bytes_in", "bytes_out", "dropped", "seconds", "counters")},
            "docs_per_s": stats["docs_in"] / stats["seconds"], "mb_per_s": stats["bytes_in"] / 1e6 / stats["seconds"],
            "wall_seconds": last - first, "peak_rss": sampler.rss.get(name, {}), "peak_anon": sampler.anon.get(name, {}),
            "disk_peak_bytes": max(sampler.disk.get(name, 0), disk_bytes(run_dir / name)),
            "disk_final_bytes": disk_bytes(run_dir / name)}
    for peaks in sampler.rss.values():
        for key, rss in peaks.items():
            result["peak_rss"][key] = max(result["peak_rss"].get(key, 0), rss)
    result["log_lines"] = [line.strip() for line in log_path.read_text().splitlines()
                           if "candidate pairs" in line or "pairs at Jaccard" in line or "found" in line]
    return result


# ------------------------------------------------------------------------------------ report


def workers_of(peaks: dict[str, int]) -> list[int]:
    return [rss for key, rss in sorted(peaks.items()) if key.startswith("worker:")]


def gib(n: float) -> str:
    return f"{n / GIB:.2f}"


def size_table(size: int, corpus: dict, run: dict) -> str:
    expected = corpus["expected"]
    lines = [f"\n## {size:,} documents: {corpus['bytes'] / 1e6:,.0f} MB of JSONL in {corpus['shards']} shards, "
             f"ccforge curate {run['wall_seconds']:.0f} s wall",
             f"injected: {expected['exact_copies']:,} exact copies, {expected['near_copies']:,} near copies, "
             f"{expected['docs_with_boilerplate']:,} documents with a boilerplate span "
             f"({expected['boilerplate_bytes'] / 1e6:.1f} MB)\n",
             "| stage | docs in | docs out | dropped | s | docs/s | MB/s | driver GiB | workers GiB | workers anon GiB "
             "| disk B/doc peak | final |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in run["stages"].items():
        top = sorted(s["dropped"].items(), key=lambda kv: -kv[1])
        dropped = f"{sum(s['dropped'].values()):,}" + (f" ({', '.join(f'{k} {v:,}' for k, v in top[:2])}"
                                                       f"{', ...' if len(top) > 2 else ''})" if top else "")
        workers = " / ".join(gib(r) for r in workers_of(s["peak_rss"])) or "-"
        anon = " / ".join(gib(r) for r in workers_of(s.get("peak_anon", {}))) or "-"
        lines.append(f"| {name} | {s['docs_in']:,} | {s['docs_out']:,} | {dropped} | {s['seconds']:.1f} | "
                     f"{s['docs_per_s']:,.0f} | {s['mb_per_s']:.2f} | {gib(s['peak_rss'].get(DRIVER, 0))} | {workers} | {anon} | "
                     f"{s['disk_peak_bytes'] / s['docs_in']:,.0f} | {s['disk_final_bytes'] / s['docs_in']:,.0f} |")
    peaks = run["peak_rss"]
    lines.append(f"\nwhole run, peak RSS GiB: driver {gib(peaks.get(DRIVER, 0))}, workers "
                 f"{' / '.join(gib(r) for r in workers_of(peaks))}, Prefect server {gib(peaks.get(PREFECT, 0))}, "
                 f"other {gib(peaks.get(OTHER, 0))}, whole tree {gib(peaks.get('tree', 0))}")
    lines += [f"  log: {line}" for line in run["log_lines"]]
    return "\n".join(lines)


def scaling(small: int, large: int, runs: dict[int, dict]) -> tuple[str, dict]:
    a, b = runs[small], runs[large]
    lines = [f"\n## Scaling {small:,} -> {large:,} documents\n", "| measure | small | large | ratio | target | ok |",
             "|---|---:|---:|---:|---|---|"]
    checks = {}

    def row(name: str, x: float, y: float, target: str, ok: bool, fmt: str) -> None:
        checks[name] = {"small": x, "large": y, "ratio": y / x if x else None, "ok": ok}
        lines.append(f"| {name} | {x:{fmt}} | {y:{fmt}} | {y / x if x else float('nan'):.2f} | {target} | "
                     f"{'yes' if ok else 'NO'} |")

    for name in b["stages"]:
        x, y = a["stages"][name]["docs_per_s"], b["stages"][name]["docs_per_s"]
        row(f"{name} docs/s", x, y, f">= {MIN_SPEED_RATIO}x", y >= MIN_SPEED_RATIO * x, ",.0f")
    x, y = a["peak_rss"].get(DRIVER, 0) / GIB, b["peak_rss"].get(DRIVER, 0) / GIB
    row("driver peak RSS GiB", x, y, f"<= {MAX_DRIVER_RATIO}x and < {MAX_DRIVER_GIB} GiB",
        y <= MAX_DRIVER_RATIO * x and y < MAX_DRIVER_GIB, ".2f")
    x, y = max(workers_of(a["peak_rss"]), default=0) / GIB, max(workers_of(b["peak_rss"]), default=0) / GIB
    row("worker peak RSS GiB (largest worker)", x, y, f"<= {MAX_WORKER_RATIO}x (bounded)", y <= MAX_WORKER_RATIO * x, ".2f")
    x, y = (max((max(workers_of(s.get("peak_anon", {})), default=0) for s in run["stages"].values()), default=0) / GIB
            for run in (a, b))
    row("worker peak anonymous RSS GiB (largest worker)", x, y, f"<= {MAX_WORKER_RATIO}x (bounded)",
        y <= MAX_WORKER_RATIO * x, ".2f")
    x, y = a["peak_rss"].get(PREFECT, 0) / GIB, b["peak_rss"].get(PREFECT, 0) / GIB
    row("Prefect server peak RSS GiB", x, y, "(not ours)", True, ".2f")
    return "\n".join(lines), checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="corpus sizes (documents), comma-separated")
    parser.add_argument("--stages", default=STAGES, help=f"curate stages (default {STAGES})")
    parser.add_argument("--workdir", default="/tmp/ccforge-scale-bench", help="corpora, runs and results go here")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--build-only", action="store_true", help="build (or check) the corpora and stop")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    workdir = Path(args.workdir)
    corpora, runs = {}, {}
    for size in sizes:
        spec = CorpusSpec(docs=size, seed=args.seed)
        corpora[size] = build_corpus(workdir / f"corpus-{size}", spec)
        c = corpora[size]
        built = "reused" if c["reused"] else f"built in {c['build_seconds']:.0f} s"
        print(f"corpus {size:,}: {built} "
              f"({c['base_texts']:,} base texts, {c['bytes'] / 1e6:,.0f} MB); rates: exact copies "
              f"{spec.exact_rate:.0%}, near copies {spec.near_rate:.0%}, boilerplate {spec.boilerplate_rate:.0%}, "
              f"words swapped {spec.swap_rate:.0%}; injected: {c['expected']}", flush=True)
    if args.build_only:
        return
    report = []
    for size in sizes:
        print(f"curating {size:,} documents: {', '.join(stages)} ...", flush=True)
        runs[size] = run_curate(workdir / f"corpus-{size}", workdir / f"run-{size}", stages, args.workers)
        report.append(size_table(size, corpora[size], runs[size]))
        print(report[-1], flush=True)
    checks = {}
    if len(sizes) > 1:
        text, checks = scaling(sizes[0], sizes[-1], runs)
        report.append(text)
        print(text)
    results = workdir / "scale-results.json"
    results.write_text(json.dumps({"sizes": sizes, "stages": stages, "workers": args.workers,
                                   "corpora": {str(k): v for k, v in corpora.items()},
                                   "runs": {str(k): v for k, v in runs.items()}, "checks": checks}, indent=1))
    (workdir / "scale-results.md").write_text("\n".join(report) + "\n")
    print(f"\nresults: {results}  {workdir / 'scale-results.md'}")


if __name__ == "__main__":
    main()
