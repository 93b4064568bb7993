"""jusText's context-free classification (`justext.core.classify_paragraphs`) over a page's arrays."""

from __future__ import annotations

import numpy as np

from curation.justext_fast.segment import Segments
from curation.justext_fast.text import word_counts

# Paragraph classes as small integers; the order is irrelevant, the names are jusText's.
BAD, SHORT, NEARGOOD, GOOD = 0, 1, 2, 3


def classify(texts: list[str], lengths: np.ndarray, segments: Segments, stoplist: frozenset[str], *,
             length_low: int, length_high: int, stopwords_low: float, stopwords_high: float, max_link_density: float) -> np.ndarray:
    """`cf_class` of each paragraph (int8 codes), tested in jusText's order: link density,
    copyright sign, inside a `select`, short, then stop-word density. `stoplist` is lower-case
    (`justext.core.define_stoplist`). Densities are float64 divisions of the same integers
    jusText divides, so every comparison comes out the same."""
    links = np.array(segments.link_chars, dtype=np.int64)
    words, stops = word_counts(texts, stoplist)
    link_density = np.divide(links, lengths, out=np.zeros(len(texts)), where=lengths > 0)
    stop_density = np.divide(stops, words, out=np.zeros(len(texts)), where=words > 0)
    copyright_ = _copyright(texts)
    short = lengths < length_low
    conditions = [
        link_density > max_link_density, copyright_, np.array(segments.in_select, dtype=bool), short & (links > 0),
        short, (stop_density >= stopwords_high) & (lengths > length_high), stop_density >= stopwords_low,
    ]
    return np.select(conditions, [BAD, BAD, BAD, BAD, SHORT, GOOD, NEARGOOD], default=BAD).astype(np.int8)


def _copyright(texts: list[str]) -> np.ndarray:
    """Paragraphs holding '\\xa9' or '&copy' (jusText calls them bad); most pages have neither."""
    page = "".join(texts)
    if "\xa9" not in page and "&copy" not in page:
        return np.zeros(len(texts), dtype=bool)
    return np.array(["\xa9" in text or "&copy" in text for text in texts], dtype=bool)
