"""Fuzzy dedup side by side: ccforge, DataTrove's MinHash pipeline, and plain datasketch.

All three run on the same real documents (local documentation and man pages) with injected
near-duplicates (2-40 % of words changed, paragraphs reordered, boilerplate added), each in
its own process tree so that peak RSS covers everything it starts. Precision and recall are
measured against the exact Jaccard of every pair (`flows.demo.dedup_eval`).

    python benchmarks/dedup_bench.py                 # 28k documents, about 15 minutes on 2 cores
    python benchmarks/dedup_bench.py --originals 2000 --fraction 0.1   # a quick look

DataTrove is installed into its own virtualenv (`--datatrove-venv`) when missing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from flows.demo.dedup_eval import (
    InjectedCorpus, SimilarPairs, inject_near_duplicates, real_documents, score, true_similar_pairs,
)

THRESHOLD = 0.8
N_SHARDS = 8


def build_corpus(work: Path, originals: int, fraction: float, max_chars: int) -> InjectedCorpus:
    cache = work / f"corpus-{originals}-{fraction}-{max_chars}.parquet"
    if cache.exists():
        table = pq.read_table(cache)
        return InjectedCorpus(table["text"].to_pylist(), table["origin"].to_numpy(), table["kind"].to_pylist())
    texts = [t[:max_chars] for t in real_documents(originals, seed=0)]
    corpus = inject_near_duplicates(texts, fraction=fraction, seed=0)
    work.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"text": corpus.texts, "origin": corpus.origin, "kind": corpus.kind}), cache)
    return corpus


def write_inputs(corpus: InjectedCorpus, work: Path) -> tuple[Path, Path]:
    """The corpus as N_SHARDS Parquet shards (ccforge, datasketch) and JSONL files (DataTrove)."""
    parquet_dir, jsonl_dir = work / "input-parquet", work / "input-jsonl"
    if not parquet_dir.exists():
        parquet_dir.mkdir(parents=True)
        jsonl_dir.mkdir(parents=True)
        ids = [f"d{i:06d}" for i in range(len(corpus.texts))]
        for shard, rows in enumerate(np.array_split(np.arange(len(ids)), N_SHARDS)):
            frame = pd.DataFrame({"id": [ids[i] for i in rows], "text": [corpus.texts[i] for i in rows]})
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), parquet_dir / f"part-{shard:05d}.parquet")
            frame.to_json(jsonl_dir / f"part-{shard:05d}.jsonl", orient="records", lines=True, force_ascii=False)
    return parquet_dir, jsonl_dir


def truth(corpus: InjectedCorpus, work: Path, shingle: str) -> SimilarPairs:
    cache = work / f"truth-{len(corpus.texts)}-{shingle.replace(':', '')}.npz"
    if cache.exists():
        data = np.load(cache)
        return SimilarPairs(data["a"], data["b"], data["jaccard"])
    started = time.perf_counter()
    pairs = true_similar_pairs(corpus.texts, shingle, threshold=THRESHOLD)
    np.savez(cache, a=pairs.a, b=pairs.b, jaccard=pairs.jaccard)
    print(f"truth {shingle}: {len(pairs.a):,} pairs at Jaccard >= {THRESHOLD} ({time.perf_counter() - started:.0f} s)")
    return pairs


def run_measured(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of the process and all its children, sampled every 50 ms."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def tree_rss(root: psutil.Process) -> int:
        total = 0
        for member in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):  # a child may exit between listing and reading
                total += member.memory_info().rss
        return total

    def sample() -> None:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(process.pid)
            while process.poll() is None:
                peak[0] = max(peak[0], tree_rss(root))
                time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed:\n{stderr[-3000:]}")
    return time.perf_counter() - started, peak[0] / 2**30


# ---------------------------------------------------------------------- the three systems


def run_ccforge(parquet_dir: Path, out: Path, shingle: str) -> tuple[float, float, np.ndarray, np.ndarray]:
    command = [sys.executable, "-m", "flows.cli", "stage", "fuzzy-dedup", "--input", str(parquet_dir),
               "--output", str(out), "--shingle", shingle, "--workers", "2"]
    seconds, rss = run_measured(command)
    duplicates = pq.read_table(out / "duplicates.parquet").to_pandas()
    return seconds, rss, duplicates["id"].to_numpy(), duplicates["kept_id"].to_numpy()


DATASKETCH_SCRIPT = textwrap.dedent("""
    import json, sys, glob
    import numpy as np, pyarrow.parquet as pq
    from datasketch import MinHash, MinHashLSH
    parquet_dir, out = sys.argv[1], sys.argv[2]
    table = pq.read_table(sorted(glob.glob(parquet_dir + "/*.parquet")))
    ids, texts = table["id"].to_pylist(), table["text"].to_pylist()
    lsh = MinHashLSH(threshold=0.8, num_perm=260)
    hashes = []
    for i, text in enumerate(texts):
        words = text.lower().split()
        grams = {" ".join(words[j:j + 5]).encode() for j in range(max(1, len(words) - 4))} if words else set()
        m = MinHash(num_perm=260, seed=42)
        m.update_batch(list(grams))
        lsh.insert(i, m)
        hashes.append(m)
    parent = list(range(len(texts)))
    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    for i, m in enumerate(hashes):
        for j in lsh.query(m):
            a, b = find(i), find(j)
            if a != b:
                parent[max(a, b)] = min(a, b)
    roots = [find(i) for i in range(len(texts))]
    removed = [[ids[i], ids[r]] for i, r in enumerate(roots) if r != i]
    json.dump(removed, open(out, "w"))
""")


def run_datasketch(parquet_dir: Path, out: Path) -> tuple[float, float, np.ndarray, np.ndarray]:
    script = out.with_suffix(".py")
    script.write_text(DATASKETCH_SCRIPT)
    seconds, rss = run_measured([sys.executable, str(script), str(parquet_dir), str(out)])
    removed = np.array(json.loads(out.read_text()), dtype=object).reshape(-1, 2)
    return seconds, rss, removed[:, 0], removed[:, 1]


DATATROVE_SCRIPT = textwrap.dedent("""
    import sys
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature)
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    if __name__ == "__main__":  # the executor starts processes with forkserver
        jsonl_dir, work, tasks = sys.argv[1], sys.argv[2], int(sys.argv[3])
        config = MinhashConfig(n_grams=5, num_buckets=20, hashes_per_bucket=13, seed=42)
        reader = lambda: JsonlReader(jsonl_dir, text_key="text", id_key="id")
        stage1 = LocalPipelineExecutor(pipeline=[reader(), MinhashDedupSignature(f"{work}/signatures", config=config)],
                                       tasks=tasks, workers=2, logging_dir=f"{work}/logs/1")
        stage2 = LocalPipelineExecutor(pipeline=[MinhashDedupBuckets(f"{work}/signatures", f"{work}/buckets", config=config)],
                                       tasks=config.num_buckets, workers=2, logging_dir=f"{work}/logs/2", depends=stage1)
        stage3 = LocalPipelineExecutor(pipeline=[MinhashDedupCluster(f"{work}/buckets", f"{work}/remove", config=config,
                                                                     save_cluster_id=True)],
                                       tasks=1, logging_dir=f"{work}/logs/3", depends=stage2)
        stage4 = LocalPipelineExecutor(pipeline=[reader(), MinhashDedupFilter(f"{work}/remove", load_cluster_ids=True,
                                                 exclusion_writer=JsonlWriter(f"{work}/removed")),
                                                 JsonlWriter(f"{work}/kept")],
                                       tasks=tasks, workers=2, logging_dir=f"{work}/logs/4", depends=stage3)
        stage4.run()
""")


def ensure_datatrove(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    probe = "import datatrove.pipeline.dedup, spacy, orjson"
    if subprocess.run([str(python), "-c", probe], capture_output=True).returncode != 0:
        print(f"installing DataTrove into {venv} ...")
        # The English word tokenizer of its MinHash stage is spaCy's; the rest is in "processing".
        subprocess.run([str(python), "-m", "pip", "install", "-q", "datatrove[processing]", "spacy", "orjson"], check=True)
    return python


def run_datatrove(python: Path, jsonl_dir: Path, parquet_dir: Path, work: Path) -> tuple[float, float, np.ndarray, np.ndarray]:
    script = work / "pipeline.py"
    work.mkdir(parents=True, exist_ok=True)
    script.write_text(DATATROVE_SCRIPT)
    seconds, rss = run_measured([str(python), str(script), str(jsonl_dir), str(work), str(N_SHARDS)])
    # DataTrove's own bookkeeping: (doc index in file, cluster id) per input file in `.clusters`,
    # removed doc indices in `.remove`. (Its filter only tags documents of files that lose one.)
    first_row = np.cumsum([0] + [pq.ParquetFile(p).metadata.num_rows
                                 for p in sorted(parquet_dir.glob("*.parquet"))])
    cluster_of, removed = {}, []
    for path in sorted((work / "remove").glob("*.clusters")):
        pairs = np.frombuffer(path.read_bytes(), dtype="<u4").reshape(-1, 2)
        cluster_of.update(zip((first_row[int(path.stem)] + pairs[:, 0]).tolist(), pairs[:, 1].tolist()))
    for path in sorted((work / "remove").glob("*.remove")):
        removed += (first_row[int(path.stem)] + np.frombuffer(path.read_bytes(), dtype="<u4")).tolist()
    removed_set = set(removed)
    kept_of_cluster = {c: d for d, c in cluster_of.items() if d not in removed_set}
    removed_ids = np.array([f"d{d:06d}" for d in removed], dtype=object)
    kept_ids = np.array([f"d{kept_of_cluster[cluster_of[d]]:06d}" for d in removed], dtype=object)
    return seconds, rss, removed_ids, kept_ids


# ------------------------------------------------------------------------------ scoring


def clusters_from_removals(n_docs: int, removed_ids: np.ndarray, kept_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    number = lambda ids: np.array([int(str(i)[1:]) for i in ids], dtype=np.int64)  # noqa: E731
    cluster_of = np.full(n_docs, -1, dtype=np.int64)
    removed = np.zeros(n_docs, dtype=bool)
    if len(removed_ids):
        gone, kept = number(removed_ids), number(kept_ids)
        cluster_of[kept] = kept
        cluster_of[gone] = kept
        removed[gone] = True
    return cluster_of, removed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/ccforge-dedup-bench")
    parser.add_argument("--originals", type=int, default=20_000)
    parser.add_argument("--fraction", type=float, default=0.06, help="share of originals given 7 edited copies")
    parser.add_argument("--max-chars", type=int, default=30_000)
    parser.add_argument("--datatrove-venv", default="/tmp/ccforge-datatrove-venv")
    parser.add_argument("--skip", nargs="*", default=[], choices=["datatrove", "datasketch", "ccforge-char"])
    args = parser.parse_args()
    work = Path(args.work)
    corpus = build_corpus(work, args.originals, args.fraction, args.max_chars)
    n_docs = len(corpus.texts)
    mb = sum(len(t.encode()) for t in corpus.texts) / 1e6
    print(f"corpus: {n_docs:,} documents ({args.originals:,} real, {n_docs - args.originals:,} injected), {mb:.0f} MB",
          flush=True)
    parquet_dir, jsonl_dir = write_inputs(corpus, work)
    runs: list[tuple[str, str, tuple]] = []
    stamp = time.strftime("%H%M%S")
    runs.append(("ccforge (word:5, verified)", "word:5",
                 run_ccforge(parquet_dir, work / f"ccforge-word5-{stamp}", "word:5")))
    if "ccforge-char" not in args.skip:
        runs.append(("ccforge (char:24, verified; default)", "char:24",
                     run_ccforge(parquet_dir, work / f"ccforge-char24-{stamp}", "char:24")))
    if "datasketch" not in args.skip:
        runs.append(("datasketch MinHash + MinHashLSH (word:5)", "word:5",
                     run_datasketch(parquet_dir, work / f"datasketch-{stamp}.json")))
    if "datatrove" not in args.skip:
        python = ensure_datatrove(Path(args.datatrove_venv))
        runs.append(("DataTrove MinHash, 4 stages, 2 workers (word:5)", "word:5",
                     run_datatrove(python, jsonl_dir, parquet_dir, work / f"datatrove-{stamp}")))
    for name, _, (seconds, rss, removed_ids, _) in runs:
        print(f"{name}: {seconds:.1f} s, peak RSS {rss:.2f} GiB, {len(removed_ids):,} removed", flush=True)
    truths = {shingle: truth(corpus, work, shingle) for shingle in {s for _, s, _ in runs}}
    print("\n| system | wall s | docs/s | peak RSS GiB | precision | recall | removed |\n|---|---:|---:|---:|---:|---:|---:|")
    speed = {}
    for name, shingle, (seconds, rss, removed_ids, kept_ids) in runs:
        result = score(truths[shingle], *clusters_from_removals(n_docs, removed_ids, kept_ids))
        speed[name] = n_docs / seconds
        print(f"| {name} | {seconds:.1f} | {n_docs / seconds:,.0f} | {rss:.2f} | {result.precision:.3f} | "
              f"{result.recall:.3f} | {result.removed:,} |")
    ours = speed[runs[0][0]]
    for name, docs_per_s in speed.items():
        if name != runs[0][0]:
            print(f"ccforge word:5 vs {name}: {ours / docs_per_s:.1f}x")
    print(f"\ntrue pairs at Jaccard >= {THRESHOLD}: " + ", ".join(f"{s} {len(t.a):,}" for s, t in truths.items()))


if __name__ == "__main__":
    main()
