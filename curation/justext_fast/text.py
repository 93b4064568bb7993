"""jusText's whitespace normalisation and word statistics, without a Python call per word.

`justext.utils.normalize_whitespace` replaces each whitespace run with '\\n' when the run holds
'\\n' or '\\r', else with ' ', through a Python callback per run. Three C-level steps do the same:
runs without a line break become ' ', then a line break with the spaces and breaks after it
becomes '\\n', then a space before a '\\n' (the start of the same run) goes. Only runs that
change are matched, so ordinary single spaces cost no match object. `\\s` and
`str.isspace`/`str.strip`/`str.split` agree on what whitespace is (all are `Py_UNICODE_ISSPACE`).
"""

from __future__ import annotations

import re

import numpy as np

_SPACE_RUN = re.compile(r"[^\S\n\r ][^\S\n\r]*| [^\S\n\r]+")  # a run without breaks, other than one ' '
_BREAK_RUN = re.compile(r"\r[\n\r ]*|\n[\n\r ]+")  # a run of breaks and spaces, other than one '\n'
#: Joins a page's paragraphs: not whitespace, and never in lxml's text (libxml2 turns NUL into U+FFFD).
SEPARATOR = "\x00"


def normalise_whitespace(text: str) -> str:
    """`justext.utils.normalize_whitespace(text)`."""
    return _BREAK_RUN.sub("\n", _SPACE_RUN.sub(" ", text)).replace(" \n", "\n")


def paragraph_texts(raw_texts: list[str]) -> list[str]:
    """jusText's `Paragraph.text` of each paragraph, from its stripped joined text nodes; one
    pass over the page, as normalising the join of normalised text nodes equals normalising
    their join, and no whitespace run crosses the separator."""
    if not raw_texts:
        return []
    page = SEPARATOR.join(raw_texts)
    assert page.count(SEPARATOR) == len(raw_texts) - 1, "a text node holds the paragraph separator"
    return normalise_whitespace(page).split(SEPARATOR)


def word_counts(texts: list[str], stoplist: frozenset[str]) -> tuple[np.ndarray, np.ndarray]:
    """(words, stop words) per paragraph, as `Paragraph.words_count` and `stopwords_count` count
    them (`text.split()`, `word.lower() in stoplist`). A normalised, stripped, non-empty text has
    one more word than single-character gaps. The page is lower-cased once: no cased or
    case-ignorable character is whitespace, so the context of a final sigma ends where the word does."""
    words = np.fromiter((text.count(" ") + text.count("\n") + 1 for text in texts), dtype=np.int64, count=len(texts))
    if not stoplist or not texts:
        return words, np.zeros(len(texts), dtype=np.int64)
    tokens = " ".join(texts).lower().split()
    is_stop = np.fromiter(map(stoplist.__contains__, tokens), dtype=np.int64, count=len(tokens))
    starts = np.concatenate(([0], np.cumsum(words)[:-1]))
    return words, np.add.reduceat(is_stop, starts)
