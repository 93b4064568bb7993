"""A JSONL corpus of any size made from the real documents on this machine, with known duplicate rates.

Base texts: 6,000 real documents (`flows.demo.dedup_eval.real_documents`: all 1,169
PostgreSQL and about 490 Python pages, about 2,170 Debian handbook pages in the first 20 of its
26 languages, about 2,170 man pages) plus the licence texts of /usr/share/common-licenses.
Every document is a pure function of (seed, its index, the plan):

- an original is a window of whole paragraphs (about 450 words, log-normal) of a base text
  drawn with replacement, with `swap_rate` (20 %) of its words swapped for other words of the
  same base text (keeps the language and word statistics; two documents of one base text rarely
  share a 200-byte span or many 24-character shingles, so the duplicates found stay close to the
  injected ones as the corpus grows), a unique first and last line, and, for `boilerplate_rate` (20 %) of them, one
  of N_BOILERPLATE shared navigation or footer spans of 250-400 characters;
- an exact copy (`exact_rate`, 5 %) repeats a random original's text under its own id and url;
- a near copy (`near_rate`, 5 %) is an original with 1 % of its words replaced or one of its
  paragraphs moved (Jaccard about 0.9 on character 24-grams, above the 0.8 of fuzzy dedup).
  Two near copies of one short original may coincide (3 in 40,000 documents): exact dedup
  then removes one of them instead of fuzzy dedup.

Shards of SHARD_DOCS (20,000) lines {"id", "text", "url"} are built in parallel processes, and
reused when the manifest (`_manifest.json`) of an earlier build matches.
"""

from __future__ import annotations

import bisect
import json
import math
import multiprocessing
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import orjson

from flows.demo.dedup_eval import real_documents
from flows.demo.sample_crawl.sources import COMMON_LICENSES_ROOT

#: Bump when the generator changes: cached corpora of another version are rebuilt.
CORPUS_VERSION = 2
SHARD_DOCS = 20_000
MANIFEST = "_manifest.json"
PARAGRAPH = "\n\n"
#: Words of an original: log-normal, median 450 (about 3 KB), clipped.
MEDIAN_WORDS, SIGMA_WORDS, MIN_WORDS, MAX_WORDS = 450, 0.7, 80, 5000
N_BOILERPLATE = 12
_SITES = 500


@dataclass(frozen=True, kw_only=True)
class CorpusSpec:
    docs: int
    seed: int = 0
    pool: int = 6000  # real base texts (plus the licences)
    exact_rate: float = 0.05
    near_rate: float = 0.05
    boilerplate_rate: float = 0.20
    swap_rate: float = 0.20
    near_word_rate: float = 0.01
    shard_docs: int = SHARD_DOCS
    version: int = CORPUS_VERSION

    def __post_init__(self) -> None:
        if self.docs < 1 or self.exact_rate + self.near_rate >= 1:
            raise ValueError(f"need docs >= 1 and exact_rate + near_rate < 1, got {self}")


@dataclass(frozen=True)
class Base:
    tokens: list[str]  # words, with PARAGRAPH tokens between paragraphs
    starts: list[int]  # token index of every paragraph start
    vocabulary: list[str]  # the words alone (swaps draw from it: frequency-weighted)
    title: str


# ------------------------------------------------------------------------------ the plan


ORIGINAL, EXACT, NEAR = 0, 1, 2


def make_plan(spec: CorpusSpec) -> dict[str, np.ndarray]:
    """Per document: kind, the original a copy repeats, the near copy's edit, the boilerplate span."""
    rng = np.random.default_rng(spec.seed)
    u = rng.random(spec.docs)
    kind = np.where(u < spec.exact_rate, EXACT, np.where(u < spec.exact_rate + spec.near_rate, NEAR, ORIGINAL))
    kind[0] = ORIGINAL
    originals = np.flatnonzero(kind == ORIGINAL)
    source = np.where(kind == ORIGINAL, np.arange(spec.docs), originals[rng.integers(len(originals), size=spec.docs)])
    reorder = rng.random(spec.docs) < 0.5
    span = np.where(rng.random(spec.docs) < spec.boilerplate_rate, rng.integers(N_BOILERPLATE, size=spec.docs), -1)
    return {"kind": kind, "source": source, "reorder": reorder, "span": span}


def boilerplate_spans(seed: int) -> list[str]:
    """N_BOILERPLATE navigation menus (top) and footers (bottom), 250-400 characters each."""
    rng = random.Random(seed)
    menu = ["Home", "Documentation", "Downloads", "Community", "Blog", "Support", "Release notes", "Security",
            "Mailing lists", "Bug tracker", "Wiki", "Packages", "News", "Events", "Donate", "Contact"]
    spans = []
    for k in range(N_BOILERPLATE):
        site = f"project{k}.example.org"
        if k % 2 == 0:
            items = " | ".join(rng.sample(menu, 11))
            spans.append(f"Skip to main content. {site}: {items}. Search the documentation of {site}; "
                         f"choose a version and a language. You are here: {site} > Documentation > Manuals > Reference.")
        else:
            items = ", ".join(rng.sample(menu, 8))
            spans.append(f"Copyright {2000 + k} the {site} contributors. Content is available under the terms of "
                         f"its licence unless otherwise noted. See also: {items}. This site uses cookies to remember "
                         f"your preferences; by continuing to browse it you accept their use. Privacy policy. Terms of use.")
    return spans


# ----------------------------------------------------------------------------- documents


def load_pool(spec: CorpusSpec) -> list[Base]:
    texts = real_documents(spec.pool, seed=spec.seed)
    for path in sorted(COMMON_LICENSES_ROOT.iterdir()):
        if path.is_file() and not path.is_symlink():
            texts.append(path.read_text(errors="replace"))
    return [_base(t) for t in texts if len(t.split()) >= MIN_WORDS]


def _base(text: str) -> Base:
    tokens, starts = [], []
    for paragraph in text.split(PARAGRAPH):
        words = paragraph.split()
        if words:
            if tokens:
                tokens.append(PARAGRAPH)
            starts.append(len(tokens))
            tokens += words
    vocabulary = [t for t in tokens if t != PARAGRAPH]
    return Base(tokens=tokens, starts=starts, vocabulary=vocabulary, title=" ".join(vocabulary[:8]))


def original_text(i: int, spec: CorpusSpec, pool: list[Base], plan: dict[str, np.ndarray], spans: list[str]) -> str:
    rng = random.Random((spec.seed << 40) | i)
    b = rng.randrange(len(pool))
    base = pool[b]
    n_words = int(min(MAX_WORDS, max(MIN_WORDS, rng.lognormvariate(math.log(MEDIAN_WORDS), SIGMA_WORDS))))
    # A window of whole paragraphs: from a random paragraph start (early enough to fill n_words when the text allows).
    latest = bisect.bisect_right(base.starts, max(0, len(base.tokens) - n_words)) - 1
    start = base.starts[rng.randrange(latest + 1)]
    window = base.tokens[start:start + n_words]
    vocabulary, swap = base.vocabulary, spec.swap_rate
    words = [vocabulary[rng.randrange(len(vocabulary))] if t != PARAGRAPH and rng.random() < swap else t
             for t in window]
    date = f"2026-{1 + i % 12:02d}-{1 + i // 12 % 28:02d}"
    parts = [f"{base.title} - page {i} of site{b % _SITES:03d}.example, retrieved {date}.",
             " ".join(words).replace(f" {PARAGRAPH} ", PARAGRAPH),
             f"Mirror copy {i:07d} of {len(words)} words, checked on {date}."]
    span = int(plan["span"][i])
    if span >= 0:
        parts.insert(1 if span % 2 == 0 else 2, spans[span])
    return PARAGRAPH.join(parts)


def near_copy(text: str, i: int, spec: CorpusSpec, reorder: bool) -> str:
    rng = random.Random((spec.seed << 40) | i)
    if reorder:  # one paragraph moved elsewhere: a full shuffle of short paragraphs would change most shingles
        paragraphs = text.split(PARAGRAPH)
        moved = paragraphs.pop(rng.randrange(len(paragraphs)))
        paragraphs.insert(rng.randrange(len(paragraphs) + 1), moved)
        if PARAGRAPH.join(paragraphs) == text:
            paragraphs.append(paragraphs.pop(0))
        return PARAGRAPH.join(paragraphs)
    tokens = text.split(" ")
    for k in rng.sample(range(len(tokens)), max(1, round(spec.near_word_rate * len(tokens)))):
        tokens[k] = tokens[rng.randrange(len(tokens))] + "s"  # a different word with the same statistics
    return " ".join(tokens)


def document_text(i: int, spec: CorpusSpec, pool: list[Base], plan: dict[str, np.ndarray], spans: list[str]) -> str:
    kind, source = int(plan["kind"][i]), int(plan["source"][i])
    if kind == ORIGINAL:
        return original_text(i, spec, pool, plan, spans)
    text = original_text(source, spec, pool, plan, spans)
    return text if kind == EXACT else near_copy(text, i, spec, bool(plan["reorder"][i]))


# -------------------------------------------------------------------------------- building


_STATE: dict = {}  # the pool and plan, shared with the forked shard builders


def _write_shard(shard: int) -> int:
    spec, pool, plan, spans, out = (_STATE[k] for k in ("spec", "pool", "plan", "spans", "out"))
    path = out / f"shard-{shard:05d}.jsonl"
    stop = min(spec.docs, (shard + 1) * spec.shard_docs)
    with open(path.with_suffix(".tmp"), "wb") as handle:
        for i in range(shard * spec.shard_docs, stop):
            url = f"https://site{int(plan['source'][i]) % _SITES:03d}.example/page/{i:07d}.html"
            handle.write(orjson.dumps({"id": f"doc-{i:07d}", "text": document_text(i, spec, pool, plan, spans),
                                       "url": url}) + b"\n")
    os.replace(path.with_suffix(".tmp"), path)
    return path.stat().st_size


def expected_counts(spec: CorpusSpec, plan: dict[str, np.ndarray], spans: list[str]) -> dict[str, int]:
    """What the dedup stages should find: copies, and documents (and bytes) of shared boilerplate."""
    with_span = plan["span"][plan["source"]] >= 0  # a copy carries its original's span
    span_bytes = np.array([len(s.encode()) for s in spans])
    return {"exact_copies": int((plan["kind"] == EXACT).sum()), "near_copies": int((plan["kind"] == NEAR).sum()),
            "docs_with_boilerplate": int(with_span.sum()),
            "boilerplate_bytes": int(span_bytes[plan["span"][plan["source"]][with_span]].sum())}


def build_corpus(out: Path, spec: CorpusSpec, processes: int = 2) -> dict:
    """Write (or reuse) the corpus of `spec` in `out`; returns its manifest."""
    manifest_path = out / MANIFEST
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest["spec"] == asdict(spec):
            manifest["reused"] = True
            return manifest
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob("shard-*"), manifest_path]:
        stale.unlink(missing_ok=True)
    pool = load_pool(spec)
    plan, spans = make_plan(spec), boilerplate_spans(spec.seed)
    pool_seconds = time.perf_counter() - started
    _STATE.update(spec=spec, pool=pool, plan=plan, spans=spans, out=out)
    n_shards = -(-spec.docs // spec.shard_docs)
    with multiprocessing.get_context("fork").Pool(processes) as workers:
        n_bytes = sum(workers.imap_unordered(_write_shard, range(n_shards)))
    _STATE.clear()
    manifest = {"spec": asdict(spec), "base_texts": len(pool), "shards": n_shards, "bytes": n_bytes,
                "expected": expected_counts(spec, plan, spans),
                "pool_seconds": round(pool_seconds, 1), "build_seconds": round(time.perf_counter() - started, 1)}
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return manifest | {"reused": False}
