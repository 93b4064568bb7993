"""Throughput of every curation stage on the sample crawl: docs/s and MB/s.

Two views: each stage alone in this process on one core (the per-core cost of the stage),
and the whole curate flow on a 2-worker Dask LocalCluster (wall time per stage).

    .venv/bin/python benchmarks/curate_bench.py [--max-records 6000] [--workdir /tmp/ccforge-bench]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import pyarrow as pa

from curation.exact_dedup import ExactDedupConfig, find_duplicates, hash_documents
from curation.extract import Extractor
from curation.heuristics import HeuristicFilter
from curation.io.readers import PAYLOAD, expand_inputs, read_batches
from curation.langid import LanguageId
from flows.demo.sample_crawl import build_sample_corpus
from curation.stage import RowDropFilter, text_bytes


def _row(name: str, docs: int, n_bytes: int, seconds: float) -> str:
    return f"| {name} | {docs:,} | {n_bytes / 1e6:,.1f} | {seconds:.2f} | {docs / seconds:,.0f} | {n_bytes / 1e6 / seconds:,.2f} |"


def bench_single_core(crawl_files: list[str]) -> list[str]:
    raw = [b.table for f in crawl_files for b in read_batches(f, source="bench", batch_rows=1000)]
    rows = []
    started = time.perf_counter()
    docs = [Extractor().run(t).kept for t in raw]
    rows.append(_row("extract (jusText)", sum(t.num_rows for t in raw),
                     sum(sum(len(p or b"") for p in t[PAYLOAD].to_pylist()) for t in raw),
                     time.perf_counter() - started))
    for name, stage in (("langid (lid.176)", LanguageId()), ("heuristics (Gopher + C4)", HeuristicFilter())):
        started = time.perf_counter()
        outputs = [stage.run(t).kept for t in docs]
        rows.append(_row(name, sum(t.num_rows for t in docs), sum(text_bytes(t) for t in docs),
                         time.perf_counter() - started))
        if name.startswith("langid"):
            docs = outputs
    started = time.perf_counter()
    hashes = pa.concat_tables([hash_documents(t, i, 0, ExactDedupConfig()) for i, t in enumerate(docs)])
    duplicates = find_duplicates(hashes)
    for i, t in enumerate(docs):
        dropped_rows = duplicates.loc[duplicates["shard"] == i, "row"].to_numpy()
        RowDropFilter("exact-dedup", "exact_duplicate", dropped_rows).run(t)
    rows.append(_row("exact-dedup (3 passes, no shuffle)", sum(t.num_rows for t in docs),
                     sum(text_bytes(t) for t in docs), time.perf_counter() - started))
    return rows


def bench_flow(crawl_dir: Path, workdir: Path) -> list[str]:
    from flows.config.curate import load_curate_config
    from flows.curate import curate

    shutil.rmtree(workdir, ignore_errors=True)
    config = load_curate_config(None, inputs=[{"path": str(crawl_dir)}], workdir=str(workdir))
    return [_row(s.name, s.docs_in, s.bytes_in, s.seconds) for s in curate(config)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-records", type=int, default=6000)
    parser.add_argument("--workdir", default="/tmp/ccforge-bench")
    parser.add_argument("--skip-flow", action="store_true")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    crawl_dir = workdir / "crawl"
    if not crawl_dir.exists():
        build_sample_corpus(crawl_dir, max_records=args.max_records)
    header = ["| stage | docs in | MB in | seconds | docs/s | MB/s |", "|---|---:|---:|---:|---:|---:|"]
    print("\nEach stage alone, one process, one core:\n")
    print("\n".join(header + bench_single_core(expand_inputs([str(crawl_dir)]))))
    if not args.skip_flow:
        flow_rows = bench_flow(crawl_dir, workdir / "flow")
        print("\nThe curate flow on a 2-worker Dask LocalCluster (wall time per stage):\n")
        print("\n".join(header + flow_rows))


if __name__ == "__main__":
    main()
