"""The classify stage over one Arrow table, and the config that names the ensemble's classifiers.

A classifier is anything with `kind`, `default_threshold` and
`score(texts) -> float32 array`; `load_classifier` builds one from a local path, and
`classifiers.fingerprint.model_fingerprint(spec.path)` identifies its model.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path
from typing import Annotated, Literal, Protocol

import numpy as np
import pyarrow as pa
from pydantic import AfterValidator, ConfigDict, Field, field_validator
from pydantic.dataclasses import dataclass

from classifiers.columns import TEXT
from classifiers.ensemble import add_quality_columns
from classifiers.fasttext_classifier import POSITIVE_LABEL, FastTextClassifier
from classifiers.thresholds import DEFAULT_SUMMARY_POINTS, ClassifierThresholds

Kind = Literal["auto", "fasttext", "embedding", "hf-regression", "hf-classification"]
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _column_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"classifier name {name!r} must be lower-case letters, digits and _")
    return name


#: A classifier's name, part of the `score_<name>`/`bucket_<name>` column names.
ClassifierName = Annotated[str, AfterValidator(_column_name)]


class QualityClassifier(Protocol):
    kind: str
    default_threshold: float

    def score(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class ClassifierSpec:
    """One classifier of the ensemble; `name` makes the `score_<name>`/`bucket_<name>` columns.

    `path`: a fastText `.bin` (DCLM's or one `ccforge classifiers train` made), a ccforge
    embedding-classifier directory, a released FineWeb-Edu-style model directory, or a released
    multi-class sequence classifier (NeMo Curator's quality classifier).
    """

    name: ClassifierName  # lower-case letters, digits and _
    path: str  # a fastText .bin, a ccforge embedding-classifier directory or a released Hugging Face classifier
    kind: Kind = "auto"  # auto: from what `path` holds
    positive_label: str = POSITIVE_LABEL  # fastText only
    batch_size: int = Field(default=32, ge=1)  # encoders only
    max_length: int | None = None  # encoders only; default: the model's own (512 for released ones)
    #: hf-classification only: each label's value (label name -> value, for every label of the model);
    #: the score is the expected value. null: label k of the model's id2label is worth k.
    label_weights: dict[str, float] | None = None

    def __hash__(self) -> int:  # label_weights is a dict: hash its items, so cached_classifier can key on specs
        return hash(tuple(frozenset(v.items()) if isinstance(v, dict) else v for v in dataclasses.astuple(self)))

    def resolved_kind(self) -> str:
        if self.kind != "auto":
            return self.kind
        from classifiers.embedding_classifier import CONFIG_FILE, released_kind  # torch loads only when a model does

        path = Path(self.path)
        if path.is_file():
            return "fasttext"
        if (path / CONFIG_FILE).is_file():
            return "embedding"
        if (path / "config.json").is_file():
            return released_kind(path)
        raise FileNotFoundError(f"{path}: not a fastText model file or a classifier directory")


def load_classifier(spec: ClassifierSpec) -> QualityClassifier:
    try:
        return _load(spec, spec.resolved_kind())
    except ValueError as err:  # a bad model or setting: say which classifier of the ensemble
        raise ValueError(f"classifier {spec.name!r}: {err}") from err


def _load(spec: ClassifierSpec, kind: str) -> QualityClassifier:
    from classifiers.embedding_classifier import EmbeddingClassifier, HFClassificationClassifier, HFRegressionClassifier

    if spec.label_weights is not None and kind != "hf-classification":
        raise ValueError(f"label_weights is for hf-classification models; {spec.path} is {kind}")
    if kind == "fasttext":
        return FastTextClassifier(spec.path, positive_label=spec.positive_label)
    if kind == "embedding":
        return EmbeddingClassifier(spec.path, batch_size=spec.batch_size, max_length=spec.max_length)
    if kind == "hf-classification":
        return HFClassificationClassifier(spec.path, label_weights=spec.label_weights, batch_size=spec.batch_size,
                                          max_length=spec.max_length or 512)
    return HFRegressionClassifier(spec.path, batch_size=spec.batch_size, max_length=spec.max_length or 512)


@functools.lru_cache(maxsize=8)
def cached_classifier(spec: ClassifierSpec) -> QualityClassifier:
    """One loaded model per worker process, however many shards it scores."""
    return load_classifier(spec)


@dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class ClassifyConfig:
    """The ensemble, and optionally saved thresholds to reuse instead of computing them."""

    classifiers: tuple[ClassifierSpec, ...] = ()  # the ensemble; empty leaves the classify stage out
    #: A thresholds artifact (`thresholds.json` of an earlier run): reuse its cuts so that
    #: later crawls get the same buckets. None computes them on this corpus.
    thresholds: str | None = None
    summary_points: int = Field(default=DEFAULT_SUMMARY_POINTS, ge=100)  # points of each score sketch (percentiles)
    torch_threads: int | None = None  # per worker process; None leaves torch's default

    @field_validator("classifiers")
    @classmethod
    def _unique_names(cls, classifiers: tuple[ClassifierSpec, ...]) -> tuple[ClassifierSpec, ...]:
        names = [c.name for c in classifiers]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate names in {names}")
        return classifiers

    def require_classifiers(self) -> None:
        if not self.classifiers:
            raise ValueError("classify.classifiers is empty: name at least one model (see examples/classifiers.yaml)")


def score_texts(config: ClassifyConfig, texts: list[str]) -> dict[str, np.ndarray]:
    """float32 scores of every classifier of the ensemble."""
    if config.torch_threads:
        import torch

        torch.set_num_threads(config.torch_threads)
    return {spec.name: cached_classifier(spec).score(texts) for spec in config.classifiers}


class ClassifyStage:
    """Adds `score_<clf>`, `bucket_<clf>`, `quality_bucket`, `quality_level`; drops nothing."""

    name = "classify"

    def __init__(self, config: ClassifyConfig, thresholds: dict[str, ClassifierThresholds]) -> None:
        config.require_classifiers()
        missing = [c.name for c in config.classifiers if c.name not in thresholds]
        if missing:
            raise ValueError(f"no thresholds for classifier(s) {missing}")
        self.config = config
        self.thresholds = thresholds

    def run(self, table: pa.Table) -> pa.Table:
        return add_quality_columns(table, score_texts(self.config, table[TEXT].to_pylist()), self.thresholds)
