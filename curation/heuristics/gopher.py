"""Gopher repetition and quality rules (Rae et al. 2021, appendix A.1.1), over a whole partition.

Each function returns the rules of its family in order, as (drop reason, fails_N) pairs.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.heuristics.arrays import (
    Flat, extend_hashes, first_occurrence, group_counts, mix_row, row_keys, segment_max, to_bool, to_int, word_hashes,
)
from curation.heuristics.config import GopherQualityConfig, GopherRepetitionConfig

Rule = tuple[str, np.ndarray]

REPETITION_REASONS = (
    "gopher_dup_para_frac", "gopher_dup_para_char_frac", "gopher_dup_line_frac", "gopher_dup_line_char_frac",
    *(f"gopher_top_{n}gram" for n in range(2, 5)), *(f"gopher_dup_{n}gram" for n in range(5, 11)),
)
QUALITY_REASONS = (
    "gopher_short_doc", "gopher_long_doc", "gopher_mean_word_length", "gopher_symbol_word_ratio",
    "gopher_bullet_lines", "gopher_ellipsis_lines", "gopher_alpha_words", "gopher_stop_words",
)

#: Trimmed from both ends of a token to get a word (nltk's word_tokenize splits these off).
PUNCTUATION = string.punctuation + "“”‘’«»„‚‹›—–…¡¿·"
#: A line starting with one of these bullets (or "-", "*", "+" then a space) is a bullet line.
BULLET_LINE = r"^(?:[•●○◦‣⁃∙▪▫■□►▶➢➤✓✔]|[-*+](?:\s|$))"
ELLIPSIS_LINE = r"(?:\.\.\.|…)$"
PARAGRAPH_BREAK = r"\n[\t\n\f\r ]*\n"  # a blank line (RE2 and Python agree on this class)


@dataclass(frozen=True)
class Parsed:
    """A partition's text cut once and shared by every rule family."""

    text: pa.Array  # string[N], nulls as ""
    n_chars_N: np.ndarray  # characters (code points) per document
    tokens: Flat  # whitespace-separated tokens
    lines: Flat  # lines split on "\n", whitespace-trimmed, blank ones included

    @classmethod
    def from_text(cls, text: pa.Array) -> Parsed:
        text = pc.fill_null(text, "")
        lines = Flat.from_lists(pc.split_pattern(text, "\n"))
        lines = Flat(values=pc.utf8_trim_whitespace(lines.values), owner_W=lines.owner_W, n_rows=lines.n_rows)
        # Arrow yields one "" for an empty (trimmed) text, where Python's str.split() yields none
        tokens = Flat.from_lists(pc.utf8_split_whitespace(pc.utf8_trim_whitespace(text)))
        empty_W = to_bool(pc.equal(tokens.values, ""))
        if empty_W.any():
            tokens = tokens.where(~empty_W)
        return cls(text=text, n_chars_N=to_int(pc.utf8_length(text)), tokens=tokens, lines=lines)

    def nonblank_lines(self) -> Flat:
        return self.lines.where(to_int(pc.utf8_length(self.lines.values)) > 0)


def _ratio(num_N: np.ndarray, den_N: np.ndarray) -> np.ndarray:
    """num / den with 0 where den is 0."""
    return np.divide(num_N, den_N, out=np.zeros(len(num_N)), where=den_N > 0)


def has_letter(words: pa.Array) -> np.ndarray:
    """Words with an alphabetic character (regex \\pL), testing most of them by a cheaper proxy.

    A word that changes under swapcase has a cased letter; only the rest go through the regex.
    """
    cased_W = to_bool(pc.not_equal(pc.utf8_swapcase(words), words))
    rest_W = np.flatnonzero(~cased_W)
    cased_W[rest_W] = to_bool(pc.match_substring_regex(words.take(pa.array(rest_W)), r"\pL"))
    return cased_W


def duplicate_items(items: Flat) -> tuple[np.ndarray, np.ndarray]:
    """Per row: items equal to an earlier item of the same row, and their characters."""
    ids_W = pc.dictionary_encode(items.values).indices.to_numpy()
    is_first_W = first_occurrence(row_keys(ids_W, items.owner_W))
    dup_W = ~is_first_W
    chars_W = to_int(pc.utf8_length(items.values))
    return items.count(dup_W), items.sum(chars_W * dup_W)


def covered_chars(start_R: np.ndarray, n: int, owner_W: np.ndarray, cum_len: np.ndarray, n_rows: int) -> np.ndarray:
    """Characters per row of the words covered by n-grams starting at `start_R` (ascending),
    each word once, plus one space between consecutive covered words of a run. O(R), not O(W).
    """
    if not len(start_R):
        return np.zeros(n_rows)
    # words start_R[i] .. start_R[i] + new_R[i] are not covered by the next n-gram
    new_R = np.minimum(np.diff(start_R, append=start_R[-1] + n), n)
    chars_R = cum_len[start_R + new_R] - cum_len[start_R]
    owner_R = owner_W[start_R]
    # a run of covered words breaks at a gap or a row change; it has (words - 1) spaces
    run_starts_R = np.r_[True, (start_R[:-1] + n < start_R[1:]) | (owner_R[:-1] != owner_R[1:])]
    return np.bincount(owner_R, weights=chars_R + new_R - run_starts_R, minlength=n_rows)


def ngram_char_fractions(parsed: Parsed, top_ns: list[int], dup_ns: list[int]) -> dict[int, np.ndarray]:
    """Gopher's n-gram repetition statistics per document, float64[N] for each n asked.

    - n in `top_ns`: characters of the most frequent n-gram (occurring at least twice; the
      longest of equally frequent ones) times its count, as DataTrove counts them;
    - n in `dup_ns`: characters of the words covered by any repeat (every occurrence but the
      first) of an n-gram, each word once, plus the spaces between consecutive covered words.
    Both over the document's characters. Words are the whitespace tokens.
    """
    out: dict[int, np.ndarray] = {}
    if not top_ns and not dup_ns:
        return out
    words, n_rows = parsed.tokens, parsed.tokens.n_rows
    W = len(words.owner_W)
    len_W = to_int(pc.utf8_length(words.values))
    cum_len = np.concatenate([[0], np.cumsum(len_W)])
    row_len_N = words.count()
    remaining_W = np.repeat(np.cumsum(row_len_N), row_len_N) - np.arange(W)  # words left in the row
    hash1_W = word_hashes(words)
    # K: start positions of the n-grams still able to repeat, with their hashes
    start_K = np.flatnonzero(remaining_W >= 2)
    hash_K = hash1_W[start_K]
    count_K = np.zeros(len(start_K), dtype=np.int64)
    for n in range(2, max(top_ns + dup_ns) + 1):
        if n > 2:  # an n-gram can only repeat where its (n-1)-gram prefix repeats
            keep_K = (count_K >= 2) & (remaining_W[start_K] >= n)
            start_K, hash_K = start_K[keep_K], hash_K[keep_K]
        hash_K = extend_hashes(hash_K, hash1_W[start_K + n - 1])
        owner_K = words.owner_W[start_K]
        count_K, is_first_K = group_counts(mix_row(hash_K, owner_K))
        if n in top_ns:
            chars_K = cum_len[start_K + n] - cum_len[start_K] + (n - 1)
            top_count_N = segment_max(count_K, owner_K, n_rows)
            is_top_K = (count_K == top_count_N[owner_K]) & (count_K >= 2)
            top_chars_N = segment_max(np.where(is_top_K, count_K * chars_K, 0), owner_K, n_rows)
            out[n] = _ratio(top_chars_N, parsed.n_chars_N)
        if n in dup_ns:
            out[n] = _ratio(covered_chars(start_K[~is_first_K], n, words.owner_W, cum_len, n_rows), parsed.n_chars_N)
    return out


def repetition_rules(parsed: Parsed, config: GopherRepetitionConfig) -> list[Rule]:
    """Paragraph, line, top n-gram and duplicate n-gram rules, in DataTrove's order."""
    rules: list[Rule] = []
    text_chars_N = parsed.n_chars_N
    paragraphs = Flat.from_lists(pc.split_pattern_regex(pc.utf8_trim_whitespace(parsed.text), PARAGRAPH_BREAK))
    paragraphs = Flat(pc.utf8_trim_whitespace(paragraphs.values), paragraphs.owner_W, paragraphs.n_rows)
    for unit, items in (("para", paragraphs), ("line", parsed.nonblank_lines())):
        items = items.where(to_int(pc.utf8_length(items.values)) > 0)
        max_frac = getattr(config, f"max_dup_{unit}_frac")
        max_char_frac = getattr(config, f"max_dup_{unit}_char_frac")
        if max_frac is None and max_char_frac is None:
            continue
        dup_N, dup_chars_N = duplicate_items(items)
        if max_frac is not None:
            rules.append((f"gopher_dup_{unit}_frac", _ratio(dup_N, items.count()) > max_frac))
        if max_char_frac is not None:
            rules.append((f"gopher_dup_{unit}_char_frac", _ratio(dup_chars_N, text_chars_N) > max_char_frac))
    top, dup = config.top_ngram_max_char_frac, config.dup_ngram_max_char_frac
    fractions = ngram_char_fractions(parsed, sorted(top), sorted(dup))
    rules += [(f"gopher_top_{n}gram", fractions[n] > top[n]) for n in sorted(top)]
    rules += [(f"gopher_dup_{n}gram", fractions[n] > dup[n]) for n in sorted(dup)]
    return rules


def quality_rules(parsed: Parsed, config: GopherQualityConfig) -> list[Rule]:
    """Word count, word length, symbols, bullet and ellipsis lines, alphabetic words, stop words."""
    tokens = parsed.tokens
    # a word is a token with its punctuation trimmed; a token of punctuation only is no word
    words = pc.utf8_trim(tokens.values, characters=PUNCTUATION)
    len_W = to_int(pc.utf8_length(words))
    n_words_N = tokens.count(len_W > 0)
    rules: list[Rule] = []
    if config.min_doc_words is not None:
        rules.append(("gopher_short_doc", n_words_N < config.min_doc_words))
    if config.max_doc_words is not None:
        rules.append(("gopher_long_doc", n_words_N > config.max_doc_words))
    if config.min_mean_word_length is not None or config.max_mean_word_length is not None:
        mean_N = _ratio(tokens.sum(len_W), n_words_N)
        low = config.min_mean_word_length or 0.0
        high = config.max_mean_word_length or np.inf
        rules.append(("gopher_mean_word_length", (mean_N < low) | (mean_N > high)))
    if config.max_symbol_word_ratio is not None:
        hashes_N = to_int(pc.count_substring(parsed.text, "#"))
        ellipses_N = to_int(pc.count_substring_regex(parsed.text, r"\.\.\.|…"))
        symbols_N = np.maximum(hashes_N, ellipses_N)  # each symbol has its own 0.1 limit
        rules.append(("gopher_symbol_word_ratio", symbols_N > config.max_symbol_word_ratio * n_words_N))
    lines = parsed.nonblank_lines()
    for reason, pattern, limit in (("gopher_bullet_lines", BULLET_LINE, config.max_bullet_lines_ratio),
                                   ("gopher_ellipsis_lines", ELLIPSIS_LINE, config.max_ellipsis_lines_ratio)):
        if limit is not None:
            hits_N = lines.count(to_bool(pc.match_substring_regex(lines.values, pattern)))
            rules.append((reason, _ratio(hits_N, lines.count()) > limit))
    if config.min_alpha_words_ratio is not None:
        alpha_N = tokens.count(has_letter(words))
        rules.append(("gopher_alpha_words", _ratio(alpha_N, n_words_N) < config.min_alpha_words_ratio))
    if config.min_stop_words is not None:
        is_stop_W = to_bool(pc.is_in(pc.utf8_lower(words), pa.array(config.stop_words, pa.string())))
        rules.append(("gopher_stop_words", tokens.count(is_stop_W) < config.min_stop_words))
    return rules
