"""Measuring a near-duplicate finder: real documents, injected near-duplicates, exact truth.

Truth does not reuse the MinHash code: shingles are built as Python strings (the same
normalisation and n-gram definition), hashed with Python's 64-bit `hash`, and the exact
Jaccard of every pair of documents comes from a sparse product of the document x shingle
matrix. A finder is then scored on pairs of true Jaccard >= threshold:

- recall: share of true pairs whose two documents the finder put in one cluster;
- precision: share of removed documents that have a true near-duplicate in their cluster.
"""

from __future__ import annotations

import gzip
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix

from curation.fuzzy_dedup.sorting import dense_ranks
from flows.demo.sample_crawl.pages import visible_lines
from flows.demo.sample_crawl.sources import HANDBOOK_ROOT, MAN_ROOT, POSTGRESQL_ROOT, PYTHON_ROOT
from flows.demo.sample_crawl.troff import parse_man

EDIT_KINDS = ("words_2", "words_5", "words_10", "words_20", "words_40", "reordered", "boilerplate")
_BOILERPLATE = ("Skip to main content. Home | Docs | Downloads | Community | About. Sign in or create an "
                "account to save your preferences. This page was last updated recently; report a problem "
                "with this page. Cookies help us deliver our services. By using our services, you agree to "
                "our use of cookies. Copyright the authors. All rights reserved. Privacy policy. Terms.")


def real_documents(limit: int, *, min_words: int = 80, seed: int = 0) -> list[str]:
    """Up to `limit` distinct real texts, taken in turn from each source, then shuffled."""
    texts: dict[str, None] = {}
    sources = [_html_texts(POSTGRESQL_ROOT, "*.html"), _html_texts(PYTHON_ROOT, "**/*.html"),
               _html_texts(HANDBOOK_ROOT, "*/*.html"), _man_texts()]
    while sources and len(texts) < limit:
        for source in list(sources):
            text = next(source, None)
            if text is None:
                sources.remove(source)
            elif len(text.split()) >= min_words and len(texts) < limit:
                texts.setdefault(text)
    out = list(texts)
    random.Random(seed).shuffle(out)
    return out


def _html_texts(root: Path, pattern: str) -> Iterator[str]:
    for path in sorted(root.glob(pattern)):
        if path.stat().st_size <= 256 * 1024:
            yield "\n\n".join(visible_lines(path.read_text(errors="replace")))


def _man_texts() -> Iterator[str]:
    for path in sorted(MAN_ROOT.glob("**/man*/*.gz")):
        try:
            page = parse_man(gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace"))
        except (OSError, EOFError):
            continue
        yield "\n\n".join(text for _, text in page.blocks)


def edit_words(text: str, fraction: float, rng: random.Random, vocabulary: list[str]) -> str:
    """Replace `fraction` of the words (chosen at random) by random words of `vocabulary`."""
    tokens = re.split(r"(\s+)", text)
    word_positions = [i for i, t in enumerate(tokens) if t and not t.isspace()]
    for i in rng.sample(word_positions, round(fraction * len(word_positions))):
        tokens[i] = rng.choice(vocabulary)
    return "".join(tokens)


def reorder_paragraphs(text: str, rng: random.Random) -> str:
    paragraphs = text.split("\n\n")
    rng.shuffle(paragraphs)
    return "\n\n".join(paragraphs)


def add_boilerplate(text: str) -> str:
    return f"{_BOILERPLATE}\n\n{text}\n\n{_BOILERPLATE}"


@dataclass(frozen=True)
class InjectedCorpus:
    texts: list[str]
    origin: np.ndarray  # index of the original a text was made from; its own index for originals
    kind: list[str]  # "original" or one of EDIT_KINDS


def inject_near_duplicates(originals: list[str], *, fraction: float, seed: int = 0) -> InjectedCorpus:
    """Originals plus, for `fraction` of them, one copy per edit kind, appended in shuffled order."""
    rng = random.Random(seed)
    vocabulary = sorted({w for text in originals[:200] for w in text.split()})
    texts, origin, kind = list(originals), list(range(len(originals))), ["original"] * len(originals)
    edited = []
    for index in rng.sample(range(len(originals)), round(fraction * len(originals))):
        text = originals[index]
        for edit in EDIT_KINDS:
            if edit.startswith("words_"):
                copy = edit_words(text, int(edit.split("_")[1]) / 100, rng, vocabulary)
            else:
                copy = reorder_paragraphs(text, rng) if edit == "reordered" else add_boilerplate(text)
            edited.append((copy, index, edit))
    rng.shuffle(edited)
    for copy, index, edit in edited:
        texts.append(copy)
        origin.append(index)
        kind.append(edit)
    return InjectedCorpus(texts=texts, origin=np.array(origin), kind=kind)


def python_shingles(text: str, shingle: str) -> set[int]:
    """Shingles of the normalised text (lower case, whitespace folded), hashed by Python."""
    normalized = " ".join(text.lower().split())
    kind, size = shingle.split(":")
    size = int(size)
    if kind == "char":
        units = normalized
        grams = [units[i:i + size] for i in range(max(1, len(units) - size + 1))] if units else []
    else:
        words = normalized.split(" ") if normalized else []
        grams = [" ".join(words[i:i + size]) for i in range(max(1, len(words) - size + 1))] if words else []
    return {hash(g) for g in grams}


@dataclass(frozen=True)
class SimilarPairs:
    a: np.ndarray
    b: np.ndarray
    jaccard: np.ndarray


def true_similar_pairs(texts: list[str], shingle: str, *, threshold: float, chunk_rows: int = 2000) -> SimilarPairs:
    """Every pair (a < b) of exact Jaccard >= threshold, by a sparse matrix product."""
    sets = [np.fromiter(python_shingles(t, shingle), dtype=np.int64) for t in texts]
    sizes = np.array([len(s) for s in sets], dtype=np.int64)
    flat = np.concatenate(sets) if sets else np.empty(0, np.int64)
    vocabulary, columns = dense_ranks(flat)
    indptr = np.r_[0, np.cumsum(sizes)]
    matrix = csr_matrix((np.ones(len(flat), dtype=np.float32), columns, indptr), shape=(len(texts), len(vocabulary)))
    transposed = matrix.T.tocsr()
    found_a, found_b, found_j = [], [], []
    for start in range(0, len(texts), chunk_rows):
        shared = (matrix[start:start + chunk_rows] @ transposed).tocoo()
        rows, cols = shared.row + start, shared.col
        upper = rows < cols
        rows, cols, inter = rows[upper], cols[upper], shared.data[upper]
        jaccard = inter / (sizes[rows] + sizes[cols] - inter)
        keep = jaccard >= threshold
        found_a.append(rows[keep])
        found_b.append(cols[keep])
        found_j.append(jaccard[keep])
    return SimilarPairs(np.concatenate(found_a).astype(np.int64), np.concatenate(found_b).astype(np.int64),
                        np.concatenate(found_j).astype(np.float32))


@dataclass(frozen=True)
class Score:
    precision: float
    recall: float
    removed: int
    true_pairs: int

    def __str__(self) -> str:
        return f"P {self.precision:.3f} R {self.recall:.3f} ({self.removed} removed, {self.true_pairs} true pairs)"


def score(truth: SimilarPairs, cluster_of: np.ndarray, removed: np.ndarray) -> Score:
    """`cluster_of[i]` is document i's cluster (-1 when alone); `removed[i]` whether it was dropped."""
    together = (cluster_of[truth.a] >= 0) & (cluster_of[truth.a] == cluster_of[truth.b])
    justified = np.zeros(len(cluster_of), dtype=bool)
    justified[truth.a[together]] = True
    justified[truth.b[together]] = True
    n_removed = int(removed.sum())
    precision = float((justified & removed).sum() / n_removed) if n_removed else 1.0
    recall = float(together.mean()) if len(together) else 1.0
    return Score(precision=precision, recall=recall, removed=n_removed, true_pairs=len(together))
