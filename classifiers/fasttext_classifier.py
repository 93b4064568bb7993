"""The DCLM fastText quality classifier: bigram bag-of-words, score = P(high-quality label).

DCLM (Li et al. 2024, section 4.4) trains fastText on OpenHermes-2.5 + ELI5 positives
(`__label__hq`) against RefinedWeb negatives (`__label__cc`) with word bigrams, and keeps the
probability of `__label__hq`. Its released `.bin` loads here from a local path unchanged.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass


POSITIVE_LABEL = "__label__hq"
NEGATIVE_LABEL = "__label__cc"
#: glibc mallopt parameter: fill new allocations with the complement of this byte.
M_PERTURB = -6


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


@contextlib.contextmanager
def _zeroed_allocations() -> Iterator[None]:
    """While training, every heap allocation comes zero-filled (glibc's M_PERTURB with 0xFF: new
    memory is set to its complement, 0x00). fastText's trainer reads some of its buffers before
    writing them: on a heap reused by earlier work, the garbage makes it stop with "Encountered
    NaN" (16 of 20 runs after freeing 0xFF-filled blocks; 0 of 20 with this). The setting is
    process-wide, so it is switched back off when training ends."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_PERTURB, 0xFF)
    except (OSError, AttributeError):  # not glibc: nothing to set
        yield
        return
    try:
        yield
    finally:
        libc.mallopt(M_PERTURB, 0)


def _train_supervised(path: str, config: FastTextTrainConfig):
    import fasttext

    with _zeroed_allocations():
        return fasttext.train_supervised(
            input=path, wordNgrams=config.word_ngrams, dim=config.dim, epoch=config.epoch, lr=config.lr,
            minCount=config.min_count, bucket=config.bucket, thread=config.threads, seed=config.seed, verbose=0)


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
