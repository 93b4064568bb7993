"""Tokenize throughput (docs/s) and loader throughput (tokens/s) on real documents.

Curated shards are made from the machine's Debian handbook and PostgreSQL pages, a
byte-level BPE is trained on them, then: the tokenize stage alone on one core, the
tokenize command's Dask driver on a 2-worker LocalCluster, and the mixture loader in this
process and through a DataLoader with 2 workers.

    .venv/bin/python benchmarks/loader_bench.py [--workdir /tmp/ccforge-loader-bench] [--seq-len 4096]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from flows.demo.sample_crawl.pages import visible_lines
from flows.demo.sample_crawl.sources import handbook_docs, postgresql_docs
from curation.tokens import TokenizeConfig, TokenizeStage, train_tokenizer
from flows.engine.cluster import dask_client
from flows.engine.tokenize import resolve_token_inputs, run_tokenize
from training.data import ConsumerStream, MixtureDataset, MixtureLoader, load_mixture, plan_mixture

QUALITY = ("high", "medium", "low")


def write_curated(out_dir: Path, files: int) -> list[str]:
    docs = handbook_docs() + postgresql_docs()
    texts = ["\n".join(visible_lines(d.path.read_text(errors="replace"))) for d in docs]
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts,
                      "source": [d.source for d in docs], "quality_level": [QUALITY[i % 3] for i in range(len(texts))]})
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(files):
        paths.append(str(out_dir / f"part-{k:05d}.parquet"))
        pq.write_table(table.take(list(range(k, table.num_rows, files))), paths[-1])
    return paths


def bench_tokenize(workdir: Path, curated: list[str], tokenizer: str) -> None:
    table = pq.read_table(curated)
    stage = TokenizeStage(TokenizeConfig(tokenizer=tokenizer))
    started = time.perf_counter()
    tokens = sum(stage.run(table.slice(i, 1000))["n_tokens"].to_numpy().sum() for i in range(0, table.num_rows, 1000))
    seconds = time.perf_counter() - started
    megabytes = sum(len(t.encode()) for t in table["text"].to_pylist()) / 1e6
    print(f"tokenize, stage alone (this process): {table.num_rows:,} docs, {megabytes:.1f} MB, {tokens:,} tokens "
          f"in {seconds:.2f} s: {table.num_rows / seconds:,.0f} docs/s, {megabytes / seconds:.2f} MB/s, "
          f"{tokens / seconds:,.0f} tokens/s")
    with dask_client(None, workers=2) as client:
        stats = run_tokenize(client, resolve_token_inputs(curated), workdir / "tokens",
                             TokenizeConfig(tokenizer=tokenizer), progress=lambda _: None)
    print(f"tokenize, Dask driver (2 workers, wall incl. worker start-up): {stats.docs:,} docs in {stats.seconds:.2f} s: "
          f"{stats.docs / stats.seconds:,.0f} docs/s, {stats.tokens / stats.seconds:,.0f} tokens/s")


def bench_loader(workdir: Path, seq_len: int, windows: int) -> None:
    shards = workdir / "tokens" / "*.parquet"
    (workdir / "mix.yaml").write_text(
        f"seq_len: {seq_len}\nseed: 0\ncomponents:\n"
        f"  high: {{paths: '{shards}', quality_levels: [high], weight: 0.6}}\n"
        f"  rest: {{paths: '{shards}', quality_levels: [medium, low], weight: 0.4}}\n")
    plan = plan_mixture(load_mixture(workdir / "mix.yaml"))
    stream = ConsumerStream(plan, consumer=0, num_consumers=1)
    started = time.perf_counter()
    for _ in range(windows):
        stream.next_window()
    seconds = time.perf_counter() - started
    print(f"loader, ConsumerStream (numpy windows): {windows * seq_len / seconds:,.0f} tokens/s")
    for workers in (0, 2):
        loader = MixtureLoader(MixtureDataset(plan), batch_size=8, num_workers=workers)
        started, batches = time.perf_counter(), 0
        for _ in loader:
            batches += 1
            if batches == windows // 8:
                break
        seconds = time.perf_counter() - started
        print(f"loader, MixtureLoader batch 8 x {seq_len}, {workers} DataLoader workers (incl. start-up): "
              f"{batches * 8 * seq_len / seconds:,.0f} tokens/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/ccforge-loader-bench")
    parser.add_argument("--seq-len", type=int, default=4096)
    parser.add_argument("--windows", type=int, default=2000)
    parser.add_argument("--vocab-size", type=int, default=8192)
    args = parser.parse_args()
    workdir = Path(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    curated = write_curated(workdir / "curated", files=8)
    texts = pq.read_table(curated[0], columns=["text"])["text"].to_pylist()
    train_tokenizer(texts, vocab_size=args.vocab_size, output_dir=workdir / "tokenizer")
    bench_tokenize(workdir, curated, str(workdir / "tokenizer"))
    bench_loader(workdir, args.seq_len, args.windows)


if __name__ == "__main__":
    main()
