"""The DCLM fastText quality classifier: bigram bag-of-words, score = P(high-quality label).

DCLM (Li et al. 2024, section 4.4) trains fastText on OpenHermes-2.5 + ELI5 positives
(`__label__hq`) against RefinedWeb negatives (`__label__cc`) with word bigrams, and keeps the
probability of `__label__hq`. Its released `.bin` loads here from a local path unchanged.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import functools
import logging
import tempfile
from pathlib import Path

import numpy as np
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

log = logging.getLogger(__name__)

POSITIVE_LABEL = "__label__hq"
NEGATIVE_LABEL = "__label__cc"


@dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class FastTextTrainConfig:
    """fastText supervised training (names follow `fasttext.train_supervised`)."""

    word_ngrams: int = Field(default=2, ge=1)  # DCLM: bigram features
    dim: int = Field(default=100, ge=1)  # word vector size
    epoch: int = Field(default=10, ge=1)  # fastText's 5 epochs at lr 0.1 underfit sets of a few thousand documents
    lr: float = Field(default=0.5, gt=0)  # learning rate
    min_count: int = Field(default=1, ge=1)  # words seen fewer times are dropped
    bucket: int = 2_000_000  # hashed n-gram rows (fastText's default); the .bin holds bucket x dim floats
    threads: int = Field(default=1, ge=1)  # one thread trains deterministically for a fixed seed
    seed: int = 0


def fasttext_line(text: str) -> str:
    """One line per document, exactly as DCLM feeds fastText (`str.split()` would differ: it
    also splits at no-break spaces, which fastText keeps inside words)."""
    return " ".join(text.strip().splitlines())


def train_fasttext(texts: list[str], labels: list[str], out_path: str | Path,
                   config: FastTextTrainConfig = FastTextTrainConfig()) -> Path:
    """Train on (text, `hq`/`cc`) pairs and save the model as a fastText `.bin` file."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", dir=out_path.parent, delete=False) as handle:
        for text, label in zip(texts, labels, strict=True):
            handle.write(f"__label__{label.removeprefix('__label__')} {fasttext_line(text)}\n")
    try:
        model = _train_supervised(handle.name, config)
    finally:
        Path(handle.name).unlink()
    model.save_model(str(out_path))
    return out_path


def _zeroed_large_allocations() -> None:
    """Serve allocations of 128 KiB and more with fresh (zeroed) mmap pages (glibc's
    M_MMAP_THRESHOLD). fastText's trainer reads some of its matrices before writing them:
    on reused heap memory the garbage makes it stop with "Encountered NaN" in about a third of
    runs with a 200k-row bucket (20 of 20 succeeded with this set; measured 2026-11-23)."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc: nothing to set
        pass


def _train_supervised(path: str, config: FastTextTrainConfig, attempts: int = 3):
    """fastText's trainer; should "Encountered NaN" still happen, a rerun succeeds: retry a few times."""
    import fasttext

    _zeroed_large_allocations()
    for attempt in range(attempts):
        try:
            return fasttext.train_supervised(
                input=path, wordNgrams=config.word_ngrams, dim=config.dim, epoch=config.epoch, lr=config.lr,
                minCount=config.min_count, bucket=config.bucket, thread=config.threads, seed=config.seed, verbose=0)
        except RuntimeError as err:
            if "NaN" not in str(err) or attempt == attempts - 1:
                raise
            log.warning("fastText training diverged (%s); retrying (%d/%d)", err, attempt + 2, attempts)
    raise AssertionError("unreachable")


@functools.lru_cache(maxsize=8)
def _load_model(path: str):
    import fasttext

    return fasttext.load_model(path)


class FastTextClassifier:
    """Scores documents with a fastText supervised model: the probability of `positive_label`."""

    kind = "fasttext"
    default_threshold = 0.5

    def __init__(self, path: str | Path, *, positive_label: str = POSITIVE_LABEL) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such fastText model file")
        self.model = _load_model(str(self.path))
        labels = self.model.get_labels()
        if positive_label not in labels:
            raise ValueError(f"{self.path}: fastText model has labels {labels}, not {positive_label!r}")
        self.positive_label = positive_label

    def score(self, texts: list[str]) -> np.ndarray:
        """P(positive label) per text, float32 in [0, 1]."""
        if not texts:
            return np.zeros(0, dtype=np.float32)
        labels, probs = self.model.predict([fasttext_line(t) for t in texts], k=-1, threshold=0.0)
        scores = np.array([_label_prob(ls, ps, self.positive_label) for ls, ps in zip(labels, probs)],
                          dtype=np.float32)
        return np.clip(scores, 0.0, 1.0)  # fastText's softmax can exceed 1 by rounding


def _label_prob(labels: list[str], probs: np.ndarray, positive: str) -> float:
    for label, prob in zip(labels, probs):
        if label == positive:
            return float(prob)
    return 0.0
