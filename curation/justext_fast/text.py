"""jusText's whitespace normalisation and word statistics, without a Python call per word.

`justext.utils.normalize_whitespace` replaces each whitespace run with '\\n' when the run holds
'\\n' or '\\r', else with ' ', through a Python callback per run. Here C-level string methods do
the same a line at a time (a regex scanning every character cost twice as much on this
mostly non-ASCII text): split at the breaks, collapse each line's runs to ' ' and drop its
ends (they border a break), drop lines left empty (they were inside one break run), and join
with '\\n'. `str.split()` and `\\s` agree on what whitespace is (both are `Py_UNICODE_ISSPACE`).
"""

from __future__ import annotations

import numpy as np

#: Joins a page's paragraphs: not whitespace, and never in lxml's text (libxml2 turns NUL into U+FFFD).
SEPARATOR = "\x00"


def normalise_stripped(text: str) -> str:
    """`justext.utils.normalize_whitespace(text)` for a `text` that neither starts nor ends with
    whitespace (a run there would become one character, not vanish)."""
    if "\r" in text:
        text = text.replace("\r", "\n")
    return "\n".join([line for line in [" ".join(line.split()) for line in text.split("\n")] if line])


def normalised_length(text: str) -> int:
    """`len(justext.utils.normalize_whitespace(text))`: each whitespace run becomes one character, so the length
    is that of the words joined by single spaces plus a leading and a trailing run."""
    words = text.split()
    if not words:
        return min(len(text), 1)
    return len(" ".join(words)) + text[0].isspace() + text[-1].isspace()


def paragraph_texts(raw_texts: list[str]) -> list[str]:
    """jusText's `Paragraph.text` of each paragraph, from its stripped joined text nodes; one
    pass over the page, as normalising the join of normalised text nodes equals normalising
    their join, no whitespace run crosses the separator and the page starts and ends with a
    stripped text."""
    if not raw_texts:
        return []
    page = SEPARATOR.join(raw_texts)
    assert page.count(SEPARATOR) == len(raw_texts) - 1, "a text node holds the paragraph separator"
    return normalise_stripped(page).split(SEPARATOR)


def word_counts(texts: list[str], stoplist: frozenset[str]) -> tuple[np.ndarray, np.ndarray]:
    """(words, stop words) per paragraph, as `Paragraph.words_count` and `stopwords_count` count
    them (`text.split()`, `word.lower() in stoplist`). A normalised, stripped, non-empty text has
    one more word than single-character gaps. The page is lower-cased once: no cased or
    case-ignorable character is whitespace, so the context of a final sigma ends where the word does."""
    words = np.fromiter((text.count(" ") + text.count("\n") + 1 for text in texts), dtype=np.int64, count=len(texts))
    if not stoplist or not texts:
        return words, np.zeros(len(texts), dtype=np.int64)
    tokens = " ".join(texts).lower().split()
    # bytes() of the booleans is one C loop; np.fromiter would take them one Python object at a time.
    is_stop = np.frombuffer(bytes(map(stoplist.__contains__, tokens)), dtype=np.uint8)
    starts = np.concatenate(([0], np.cumsum(words)[:-1]))
    return words, np.add.reduceat(is_stop, starts, dtype=np.int64)
