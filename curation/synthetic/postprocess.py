"""From raw answers to rows: opening line, markdown, per-task shaping, length and language checks.

Nemotron-CC (section 2.3) removes incomplete answers, Markdown and the task's opening phrase,
drops answers under 50 tokens, and for diverse QA shuffles the pairs, keeps a number that
grows with the chunk's length and appends them to the chunk. Every answer that fails a check
gets the reason of the first check it fails (the `drop_reason` convention of every stage).
Text work is vectorised with Arrow's RE2 kernels; only QA pairs are parsed row by row.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.langid import predict_languages
from curation.schema import SYNTHETIC_KIND
from curation.synthetic.chunking import TokenCounter
from curation.synthetic.config import PostprocessConfig
from curation.synthetic.tasks import PromptTemplate

#: Drop reasons of the rephrase stage, in the order they are checked.
DROP_REASONS = (
    "empty_text", "language_not_rephrased", "not_routed", "chunk_too_short",  # planning: nothing is sent
    "request_failed", "truncated", "missing_opening", "no_qa_pairs", "too_short",
    "language_mismatch", "language_score_low", "exact_duplicate",
)

#: (pattern, replacement) applied in order: Markdown that a plain-text corpus should not carry.
_MARKDOWN = (
    (r"(?m)^\s*```.*$\n?", ""),  # code fences (their content stays)
    (r"(?m)^\s*(?:-{3,}|\*{3,}|_{3,})\s*$\n?", ""),  # horizontal rules
    (r"(?m)^\s{0,3}#{1,6}\s+", ""),  # ATX headings
    (r"!?\[([^\]\n]*)\]\([^)\n]*\)", r"\1"),  # links and images keep their text
    (r"\*\*([^*\n]+?)\*\*", r"\1"),  # bold
    (r"__([^_\n]+?)__", r"\1"),
    (r"(^|[^*\w])\*([^*\s][^*\n]*?)\*", r"\1\2"),  # italics (not list bullets)
    (r"`([^`\n]+)`", r"\1"),  # inline code
)
_LIST_MARKER = r"(?m)^[ \t]*(?:[-*•+]|\d+[.)])[ \t]+"
_ENCLOSING_QUOTES = r'(?s)^\s*["“](.*)["”]\s*$'


def strip_markdown(texts: pa.Array) -> pa.Array:
    for pattern, replacement in _MARKDOWN:
        texts = pc.replace_substring_regex(texts, pattern=pattern, replacement=replacement)
    return texts


def strip_opening(texts: pa.Array, opening: str | None) -> tuple[pa.Array, np.ndarray]:
    """Texts after the opening line (trimmed), and a bool mask of those that began with it."""
    texts = pc.utf8_trim_whitespace(texts)
    if opening is None:
        return texts, np.ones(len(texts), bool)
    starts = pc.starts_with(texts, pattern=opening, ignore_case=True).to_numpy(zero_copy_only=False)
    body = pc.utf8_trim_whitespace(pc.utf8_slice_codeunits(texts, start=len(opening)))
    return pc.if_else(pa.array(starts), body, texts), starts


def qa_pairs(text: str) -> list[str]:
    """"Question: ... Answer: ..." pairs (an answer may run over several lines)."""
    pairs: list[str] = []
    for line in text.split("\n"):
        line = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s+", "", line).strip()
        if not line:
            continue
        if line.startswith("Question:"):
            pairs.append(line)
        elif pairs:
            pairs[-1] += "\n" + line
    return [p for p in pairs if "Answer:" in p]


def select_qa_pairs(pairs: list[str], chunk_tokens: int, seed: int, config: PostprocessConfig) -> list[str]:
    """Shuffled with the chunk's seed; one pair per `qa_tokens_per_pair` chunk tokens, within [1, max]."""
    keep = int(np.clip(chunk_tokens // config.qa_tokens_per_pair, 1, config.max_qa_pairs))
    shuffled = list(pairs)
    random.Random(seed).shuffle(shuffled)
    return shuffled[:keep]


@dataclass(frozen=True)
class Postprocessed:
    """Per answer: the drop reason (None: kept), the row text, and the generated part's language."""

    reasons: np.ndarray  # object: str | None
    texts: list[str | None]
    language: list[str | None]
    language_score: np.ndarray  # float32, NaN where not checked


def postprocess(answers: pa.Table, prompts: dict[str, PromptTemplate], config: PostprocessConfig,
                counter: TokenCounter) -> Postprocessed:
    """`answers`: synthetic_kind, chunk, chunk_tokens, seed, output, finish_reason, error, and
    optionally `parent_language`. Rows with a planning reason must not be passed in."""
    n = answers.num_rows
    reasons = np.full(n, None, dtype=object)
    reasons[pc.is_valid(answers["error"]).to_numpy(zero_copy_only=False)] = "request_failed"
    if config.drop_truncated:
        truncated = pc.fill_null(pc.equal(answers["finish_reason"], "length"), False).to_numpy(zero_copy_only=False)
        reasons[(reasons == None) & truncated] = "truncated"  # noqa: E711 (elementwise)
    generated = np.full(n, None, dtype=object)  # the model's own text, cleaned
    kinds = answers[SYNTHETIC_KIND].to_numpy(zero_copy_only=False)
    outputs = strip_markdown(pc.fill_null(answers["output"], ""))
    for kind in np.unique(kinds):
        rows = np.flatnonzero(kinds == kind)
        body, opened = strip_opening(outputs.take(pa.array(rows)), prompts[kind].opening)
        body = pc.replace_substring_regex(body, pattern=_ENCLOSING_QUOTES, replacement=r"\1")
        body = pc.utf8_trim_whitespace(strip_markdown(body))  # again: quotes may have hidden a heading
        if kind == "knowledge_list":
            body = pc.replace_substring_regex(body, pattern=_LIST_MARKER, replacement="")
        generated[rows] = body.to_pylist()
        missing = rows[~opened]
        reasons[missing[reasons[missing] == None]] = "missing_opening"  # noqa: E711
    texts = _shape_qa(answers, generated, reasons, kinds, config)
    _check_length(generated, reasons, config, counter)
    language, scores = _check_language(answers, generated, reasons, config)
    texts = [t if r is None else None for t, r in zip(texts, reasons)]
    return Postprocessed(reasons=reasons, texts=texts, language=language, language_score=scores)


def _shape_qa(answers: pa.Table, generated: np.ndarray, reasons: np.ndarray, kinds: np.ndarray,
              config: PostprocessConfig) -> list[str | None]:
    """Row texts: the cleaned answer, or for diverse_qa the chunk followed by selected pairs."""
    texts = list(generated)
    qa_rows = np.flatnonzero((kinds == "diverse_qa") & (reasons == None))  # noqa: E711
    if not len(qa_rows):
        return texts
    chunks = answers["chunk"].take(pa.array(qa_rows)).to_pylist()
    tokens = answers["chunk_tokens"].take(pa.array(qa_rows)).to_pylist()
    seeds = answers["seed"].take(pa.array(qa_rows)).to_pylist()
    for row, chunk, n_tokens, seed in zip(qa_rows.tolist(), chunks, tokens, seeds):
        pairs = qa_pairs(generated[row])
        if not pairs:
            reasons[row] = "no_qa_pairs"
            continue
        kept = "\n\n".join(select_qa_pairs(pairs, n_tokens, seed, config))
        generated[row] = kept
        texts[row] = f"{chunk}\n\n{kept}" if config.qa_append_chunk else kept
    return texts


def _check_length(generated: np.ndarray, reasons: np.ndarray, config: PostprocessConfig,
                  counter: TokenCounter) -> None:
    rows = np.flatnonzero(reasons == None)  # noqa: E711
    if config.min_output_tokens and len(rows):
        short = counter.count([generated[i] for i in rows]) < config.min_output_tokens
        reasons[rows[short]] = "too_short"


def _check_language(answers: pa.Table, generated: np.ndarray, reasons: np.ndarray,
                    config: PostprocessConfig) -> tuple[list[str | None], np.ndarray]:
    """lid.176 on the generated text: expected language (listed, or the parent's) and min score."""
    language: list[str | None] = [None] * len(generated)
    scores = np.full(len(generated), np.nan, dtype=np.float32)
    rows = np.flatnonzero(reasons == None)  # noqa: E711
    if not (config.check_language and len(rows)):
        return language, scores
    codes, probs = predict_languages([generated[i] for i in rows], config.lid_model_path)
    for i, code in zip(rows.tolist(), codes):
        language[i] = code
    scores[rows] = probs
    if config.languages is not None:
        expected = np.isin(np.asarray(codes, dtype=object), np.asarray(config.languages, dtype=object))
    elif "parent_language" in answers.column_names:
        parents = answers["parent_language"].take(pa.array(rows)).to_pylist()
        expected = np.array([p is None or p == c for p, c in zip(parents, codes)], dtype=bool)
    else:
        expected = np.ones(len(rows), bool)
    reasons[rows[~expected]] = "language_mismatch"
    reasons[rows[expected & (probs < config.min_language_score)]] = "language_score_low"
    return language, scores
