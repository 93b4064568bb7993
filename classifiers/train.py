"""Train the ensemble's classifiers from one labelled set, evaluate them on its held-out split.

`train(config)` writes, under `output_dir`: `training_set.parquet` (when built from sources),
one model per classifier (`<name>.bin` for fastText, `<name>/` for embedding regression),
`ensemble.json` (the specs `ccforge classifiers score --model DIR` and the classify stage
load) and `eval.json` (held-out precision/recall/F1/ROC-AUC and correlations).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import ConfigDict, field_validator
from pydantic.dataclasses import dataclass

from classifiers.columns import LABEL, SCORE, TEXT
from classifiers.embedding_classifier import EmbeddingTrainConfig, train_embedding_classifier
from classifiers.fasttext_classifier import FastTextTrainConfig, train_fasttext
from classifiers.metrics import binary_metrics, correlations
from classifiers.stage import ClassifierName, ClassifierSpec, load_classifier
from classifiers.training_set import (
    NEGATIVE, POSITIVE, TEST, TRAIN, TrainingSetConfig, build_training_set, read_labelled, split, write_training_set,
)

ENSEMBLE_FILE = "ensemble.json"


@dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class TrainSpec:
    """One classifier to train: fastText on the binary labels, or a regression head on the scores."""

    name: ClassifierName  # the classify stage's name rule: lower-case letters, digits and _
    kind: Literal["fasttext", "embedding"]  # fastText on the labels, or a regression head on the scores
    fasttext: FastTextTrainConfig = FastTextTrainConfig()
    embedding: EmbeddingTrainConfig = EmbeddingTrainConfig()


DEFAULT_TRAIN_SPECS = (TrainSpec(name="fasttext_hq", kind="fasttext"), TrainSpec(name="edu_minilm", kind="embedding"))


@dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class TrainConfig:
    """`ccforge classifiers train`: the labelled set and the classifiers trained on it."""

    output_dir: str = "classifiers-work"  # models, ensemble.json and eval.json
    #: An existing labelled set (.parquet/.jsonl with text, label[, score, split]); when None
    #: one is built from `training_set.sources`.
    data: str | None = None
    training_set: TrainingSetConfig = TrainingSetConfig()
    classifiers: tuple[TrainSpec, ...] = DEFAULT_TRAIN_SPECS  # default: fasttext_hq and edu_minilm

    @field_validator("classifiers")
    @classmethod
    def _unique_names(cls, classifiers: tuple[TrainSpec, ...]) -> tuple[TrainSpec, ...]:
        names = [c.name for c in classifiers]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"must be a non-empty list of unique names, got {names}")
        return classifiers


def training_table(config: TrainConfig) -> pa.Table:
    if config.data is not None:
        return read_labelled(config.data)
    table = build_training_set(config.training_set)
    write_training_set(table, Path(config.output_dir) / "training_set.parquet")
    return table


def train_one(spec: TrainSpec, train_set: pa.Table, output_dir: Path) -> ClassifierSpec:
    texts = train_set[TEXT].to_pylist()
    if spec.kind == "fasttext":
        path = train_fasttext(texts, train_set[LABEL].to_pylist(), output_dir / f"{spec.name}.bin", spec.fasttext)
    else:
        path = train_embedding_classifier(texts, train_set[SCORE].to_numpy(), output_dir / spec.name, spec.embedding)
    return ClassifierSpec(name=spec.name, path=str(path), kind=spec.kind)


def train(config: TrainConfig, progress=print) -> list[ClassifierSpec]:
    """Train every configured classifier, save `ensemble.json`, evaluate on the test split."""
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    table = training_table(config)
    train_set = split(table, TRAIN)
    if train_set.num_rows == 0:
        raise ValueError(f"the training set has no {TRAIN} rows")
    labels = set(train_set[LABEL].to_pylist())
    # fastText learns the labels; a regression head learns the scores (an annotated set may hold one label only)
    if any(spec.kind == "fasttext" for spec in config.classifiers) and labels != {POSITIVE, NEGATIVE}:
        raise ValueError(f"the training split needs both labels hq and cc for fastText, has {sorted(labels)}")
    progress(f"training set: {train_set.num_rows} train, {table.num_rows - train_set.num_rows} held out")
    specs = []
    for spec in config.classifiers:
        specs.append(train_one(spec, train_set, output_dir))
        progress(f"trained {spec.name} ({spec.kind}) -> {specs[-1].path}")
    save_ensemble(specs, output_dir)
    held_out = split(table, TEST)
    if set(held_out[LABEL].to_pylist()) == {POSITIVE, NEGATIVE}:  # precision, recall and ROC-AUC need both
        report = evaluate(specs, held_out)
        (output_dir / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
        progress(format_eval(report))
    elif held_out.num_rows:
        progress(f"no held-out evaluation: the {held_out.num_rows} held-out documents are all {held_out[LABEL][0]}")
    return specs


def save_ensemble(specs: list[ClassifierSpec], output_dir: Path) -> Path:
    """`ensemble.json`: paths relative to the directory, so it can be moved whole."""
    entries = [{"name": s.name, "kind": s.kind, "path": os.path.relpath(s.path, output_dir)} for s in specs]
    path = output_dir / ENSEMBLE_FILE
    path.write_text(json.dumps({"classifiers": entries}, indent=2) + "\n")
    return path


def load_ensemble(directory: str | Path) -> list[ClassifierSpec]:
    directory = Path(directory)
    data = json.loads((directory / ENSEMBLE_FILE).read_text())
    return [ClassifierSpec(name=e["name"], kind=e["kind"], path=str(directory / e["path"])) for e in data["classifiers"]]


def evaluate(specs: list[ClassifierSpec], table: pa.Table, thresholds: dict[str, float] | None = None) -> dict:
    """Precision/recall/F1 at each classifier's threshold, ROC-AUC, and pairwise correlations."""
    texts = table[TEXT].to_pylist()
    positive = np.array(table[LABEL].to_pylist()) == POSITIVE
    scores, metrics = {}, {}
    for spec in specs:
        classifier = load_classifier(spec)
        scores[spec.name] = classifier.score(texts)
        cut = (thresholds or {}).get(spec.name, classifier.default_threshold)
        metrics[spec.name] = binary_metrics(positive, scores[spec.name], cut)
    return {"classifiers": metrics, "correlations": correlations(scores) if len(scores) > 1 else {}}


def format_eval(report: dict) -> str:
    lines = ["| classifier | threshold | precision | recall | F1 | ROC-AUC | docs |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, m in report["classifiers"].items():
        lines.append(f"| {name} | {m['threshold']:.3g} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} "
                     f"| {m['roc_auc']:.3f} | {m['docs']} |")
    for pair, c in report["correlations"].items():
        lines.append(f"correlation {pair}: pearson {c['pearson']:.3f}, spearman {c['spearman']:.3f}")
    return "\n".join(lines)


def quickstart_train_config(output_dir: str | Path) -> TrainConfig:
    """Small, quick settings for `ccforge quickstart`: the sample crawl's own local sources,
    150 documents each, a 200k-bucket fastText and a 128-token MiniLM head (about a minute on 2 cores)."""
    return TrainConfig(
        output_dir=str(output_dir), training_set=TrainingSetConfig(max_docs_per_source=150, max_chars=8000),
        classifiers=(TrainSpec(name="fasttext_hq", kind="fasttext", fasttext=FastTextTrainConfig(bucket=200_000)),
                     TrainSpec(name="edu_minilm", kind="embedding", embedding=EmbeddingTrainConfig(max_length=128))))
