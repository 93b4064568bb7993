"""Substring dedup throughput: the whole stage (five passes and the cut) on real documents.

Real documents (local documentation and man pages, `flows.demo.dedup_eval`), a share
of them given a copied passage of another, written as Parquet shards, then the stage on a Dask
LocalCluster, once with byte windows and once with token windows of a byte-level BPE trained
on the corpus. Prints docs/s, MB/s, time per pass and what was cut.

    python benchmarks/substring_dedup_bench.py                  # 4000 documents
    python benchmarks/substring_dedup_bench.py --docs 1000 --units bytes
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flows.demo.dedup_eval import real_documents
from curation.stage import text_bytes
from curation.substring_dedup import SubstringDedupConfig
from flows.engine.cluster import dask_client
from flows.engine.stage_dir import StageRun
from flows.engine.substring_dedup import run_substring_dedup


def build_inputs(work: Path, docs: int, shards: int) -> tuple[Path, int]:
    """`docs` real texts (at most 20k characters), a quarter given a 400-character passage of another."""
    directory = work / f"input-{docs}-{shards}"
    if not directory.exists():
        rng = random.Random(0)
        texts = [t[:20_000] for t in real_documents(docs, seed=0)]
        for i in rng.sample(range(len(texts)), len(texts) // 4):
            source = texts[rng.randrange(len(texts))]
            start = rng.randrange(max(1, len(source) - 400))
            at = rng.randrange(len(texts[i]) + 1)
            texts[i] = texts[i][:at] + source[start:start + 400] + texts[i][at:]
        directory.mkdir(parents=True)
        for shard, rows in enumerate(np.array_split(np.arange(len(texts)), shards)):
            pq.write_table(pa.table({"id": [f"d{i:06d}" for i in rows], "text": [texts[i] for i in rows]}),
                           directory / f"part-{shard:05d}.parquet")
    size = sum(text_bytes(pq.read_table(p, columns=["text"])) for p in directory.glob("*.parquet"))
    return directory, size


def train_bpe(inputs: Path, out: Path, vocab_size: int) -> Path:
    """A byte-level BPE as `curation.tokens.tokenizer` trains it, on the benchmark's own texts."""
    from curation.tokens.tokenizer import train_tokenizer

    if not (out / "tokenizer.json").exists():
        texts = (t for p in sorted(inputs.glob("*.parquet")) for t in pq.read_table(p)["text"].to_pylist())
        train_tokenizer(texts, vocab_size=vocab_size, output_dir=out)
    return out


def run_once(client, inputs: Path, out: Path, config: SubstringDedupConfig, size: int) -> None:  # noqa: ANN001
    shutil.rmtree(out, ignore_errors=True)
    paths = sorted(str(p) for p in inputs.glob("*.parquet"))
    run = StageRun(name="substring-dedup", inputs=[(p, "bench") for p in paths], output_dir=out, stage_key="bench")
    started = last = time.perf_counter()

    def progress(message: str) -> None:
        nonlocal last
        now = time.perf_counter()
        print(f"  {now - last:6.1f} s  {message}")
        last = now

    stats = run_substring_dedup(client, run, config, progress)
    seconds = time.perf_counter() - started
    unit = f"{config.min_tokens} tokens" if config.tokenizer else f"{config.min_bytes} bytes"
    print(f"{unit}: {stats.docs_in} docs, {size / 1e6:.1f} MB in {seconds:.1f} s = "
          f"{stats.docs_in / seconds:,.0f} docs/s, {size / 1e6 / seconds:.2f} MB/s; "
          f"cut {stats.counters['spans_removed']} spans, {stats.counters['bytes_removed'] / 1e6:.2f} MB; "
          f"dropped {stats.dropped}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=4000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--units", choices=["bytes", "tokens", "both"], default="both")
    parser.add_argument("--threaded", action="store_true", help="one worker process with --workers threads")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ccforge-substring-bench"))
    args = parser.parse_args()
    inputs, size = build_inputs(args.work, args.docs, args.shards)
    configs = []
    if args.units in ("bytes", "both"):
        configs.append(SubstringDedupConfig(min_bytes=100))
    if args.units in ("tokens", "both"):
        tokenizer = train_bpe(inputs, args.work / "bpe-8192", 8192)
        configs.append(SubstringDedupConfig(tokenizer=str(tokenizer), min_tokens=50))
    with dask_client(None, workers=args.workers, processes=not args.threaded) as client:
        for config in configs:
            run_once(client, inputs, args.work / "out", config, size)


if __name__ == "__main__":
    main()
