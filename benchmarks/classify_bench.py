"""Classifier throughput: docs/s and MB/s of each classifier alone and of the whole ensemble.

Documents are the machine's own (the default training-set sources). Without --fasttext /
--embedding, small classifiers are trained first on a separate sample; pass the released DCLM
`.bin` or a FineWeb-Edu directory to measure those instead. One process, `--threads` torch threads.

    python benchmarks/classify_bench.py --docs 400 --threads 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from classifiers.embedding_classifier import EmbeddingTrainConfig, train_embedding_classifier
from classifiers.fasttext_classifier import FastTextTrainConfig, train_fasttext
from classifiers.stage import ClassifierSpec, ClassifyConfig, ClassifyStage, load_classifier
from classifiers.thresholds import ClassifierThresholds, ScoreSummary
from classifiers.training_set import TrainingSetConfig, build_training_set


def timed(fn) -> tuple[object, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=400, help="documents scored (about docs/5 per source)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=512, help="encoder tokens per document")
    parser.add_argument("--fasttext", help="a fastText .bin (e.g. DCLM's); default: train a small one")
    parser.add_argument("--embedding", help="a classifier directory (ccforge or FineWeb-Edu format)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    documents = build_training_set(TrainingSetConfig(max_docs_per_source=args.docs // 5 + 1, seed=1))
    documents = documents.slice(0, args.docs)
    mb = sum(len(t.encode()) for t in documents["text"].to_pylist()) / 1e6
    with tempfile.TemporaryDirectory() as work:
        specs = build_specs(args, Path(work))
        thresholds = {}
        print(f"{documents.num_rows} documents, {mb:.1f} MB, {args.threads} torch thread(s), max_length {args.max_length}")
        print("| classifier | docs/s | MB/s |\n|---|---:|---:|")
        for spec in specs:
            classifier = load_classifier(spec)
            classifier.score(documents["text"].to_pylist()[:8])  # warm-up
            scores, seconds = timed(lambda c=classifier: c.score(documents["text"].to_pylist()))
            print(f"| {spec.name} ({spec.resolved_kind()}) | {documents.num_rows / seconds:,.1f} | {mb / seconds:.3f} |")
            summary = ScoreSummary.of(scores, np.ones(len(scores)))
            thresholds[spec.name] = ClassifierThresholds.from_summary(spec.name, spec.resolved_kind(), "", summary)
        stage = ClassifyStage(ClassifyConfig(classifiers=tuple(specs)), thresholds)
        _, seconds = timed(lambda: stage.run(documents.select(["id", "text"])))
        print(f"| ensemble (ClassifyStage: all scores, buckets, level) | {documents.num_rows / seconds:,.1f} "
              f"| {mb / seconds:.3f} |")


def build_specs(args: argparse.Namespace, work: Path) -> list[ClassifierSpec]:
    train = None
    if not (args.fasttext and args.embedding):
        train = build_training_set(TrainingSetConfig(max_docs_per_source=80, seed=2))
    fasttext_path = args.fasttext or str(train_fasttext(
        train["text"].to_pylist(), train["label"].to_pylist(), work / "ft.bin", FastTextTrainConfig(bucket=200_000)))
    embedding_dir = args.embedding or str(train_embedding_classifier(
        train["text"].to_pylist(), np.asarray(train["score"]), work / "edu",
        EmbeddingTrainConfig(max_length=128)))
    return [ClassifierSpec(name="fasttext", path=fasttext_path),
            ClassifierSpec(name="edu", path=embedding_dir, max_length=args.max_length)]


if __name__ == "__main__":
    main()
