"""C4 rules (Raffel et al. 2020, section 2.2; TFDS c4_utils; DataTrove C4QualityFilter).

Lines are judged one by one in DataTrove's order; a document is dropped at its first line that
says "lorem ipsum" or has a curly bracket (among lines the earlier line rules kept), or when its
kept lines hold too few sentences. Kept documents get their kept lines back as `text`.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.heuristics.arrays import Flat, to_bool, to_int
from curation.heuristics.config import C4_POLICY_SUBSTRINGS, C4Config
from curation.heuristics.gopher import Parsed, Rule

C4_REASONS = ("c4_lorem_ipsum", "c4_curly_bracket", "c4_too_few_sentences", "c4_empty_after_line_filter")

POLICY = "|".join(re.escape(phrase) for phrase in C4_POLICY_SUBSTRINGS)
CITATION = r"\[\d*\]|\[edit\]|\[citation needed\]"
TERMINAL_PUNCTUATION = r"[.?!\"']$"
#: A sentence ends in a run of . ! ? (then closing quotes/brackets) before a space or the line end.
#: A regex stand-in for nltk's punkt that DataTrove uses; it also splits after "e.g." and "Dr.".
SENTENCE_END = r"[.!?]+[\"'”’)\]]*(?:\s|$)"


def _long_word_lines(lines: Flat, max_word_length: int) -> np.ndarray:
    """Lines holding a word longer than `max_word_length` (only long lines are split again)."""
    long_W = np.flatnonzero(to_int(pc.utf8_length(lines.values)) > max_word_length)
    out_W = np.zeros(len(lines.owner_W), dtype=bool)
    if len(long_W):
        words = Flat.from_lists(pc.utf8_split_whitespace(lines.values.take(pa.array(long_W))))
        too_long = to_int(pc.utf8_length(words.values)) > max_word_length
        out_W[long_W[words.count(too_long) > 0]] = True
    return out_W


def c4_rules(parsed: Parsed, config: C4Config) -> tuple[list[Rule], pa.Array]:
    """C4 document rules in order, and every document's text made of its kept lines."""
    lines, n_rows = parsed.lines, parsed.lines.n_rows
    line = pc.replace_substring_regex(lines.values, CITATION, "") if config.remove_citations else lines.values
    candidate_W = np.ones(len(lines.owner_W), dtype=bool)
    if config.max_word_length is not None:
        candidate_W &= ~_long_word_lines(lines, config.max_word_length)
    if config.filter_no_terminal_punct:
        candidate_W &= to_bool(pc.match_substring_regex(line, TERMINAL_PUNCTUATION))
        candidate_W &= ~to_bool(pc.ends_with(line, "..."))
    if config.min_words_per_line is not None:
        # words counted before citations are removed, as DataTrove does; lines are trimmed
        more = config.min_words_per_line - 1
        at_least = r"^\S+" + (rf"(?:\s+\S+){{{more}}}" if more else "")
        candidate_W &= to_bool(pc.match_substring_regex(lines.values, at_least))
    # DataTrove's order: lorem ipsum (drops the doc), javascript (the line), "{" (the doc), policy (the line)
    lower = pc.utf8_lower(line)
    kept_W = candidate_W.copy()
    lorem_W = curly_W = None
    if config.filter_lorem_ipsum:
        lorem_W = kept_W & to_bool(pc.match_substring(lower, "lorem ipsum"))
        kept_W &= ~lorem_W
    if config.filter_javascript:
        kept_W &= ~to_bool(pc.match_substring(lower, "javascript"))
    if config.filter_curly_bracket:
        curly_W = kept_W & to_bool(pc.match_substring(line, "{"))
        kept_W &= ~curly_W
    if config.filter_policy:
        kept_W &= ~to_bool(pc.match_substring_regex(lower, POLICY))

    # the first lorem-ipsum or curly-bracket line of a document decides which one drops it
    event_W = np.zeros(len(kept_W), dtype=np.int8)
    if curly_W is not None:
        event_W[curly_W] = 2
    if lorem_W is not None:
        event_W[lorem_W] = 1
    first_event_N = np.zeros(n_rows, dtype=np.int8)
    event_at = np.flatnonzero(event_W)
    rows, first = np.unique(lines.owner_W[event_at], return_index=True)
    first_event_N[rows] = event_W[event_at[first]]

    rules: list[Rule] = []
    if lorem_W is not None:
        rules.append(("c4_lorem_ipsum", first_event_N == 1))
    if curly_W is not None:
        rules.append(("c4_curly_bracket", first_event_N == 2))
    if config.min_num_sentences is not None:
        sentences_W = np.maximum(to_int(pc.count_substring_regex(line, SENTENCE_END)), 1)
        rules.append(("c4_too_few_sentences", lines.sum(sentences_W * kept_W) < config.min_num_sentences))
    n_kept_N = lines.count(kept_W)
    rules.append(("c4_empty_after_line_filter", n_kept_N == 0))
    offsets = pa.array(np.concatenate([[0], np.cumsum(n_kept_N)]).astype(np.int32))
    kept_text = pc.binary_join(pa.ListArray.from_arrays(offsets, line.filter(pa.array(kept_W))), "\n")
    return rules, kept_text
