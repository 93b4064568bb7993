"""jusText 3.0.2, fast: the same paragraphs, classes and text, without Python work per word.

Parsing (`justext.core.html_to_dom`) and cleaning (jusText's `Cleaner` options) are jusText's
own; paragraphs come from one `lxml.etree.iterwalk` pass (`segment`), whitespace and word
statistics from C-level string operations over the whole page (`text`), and both
classification passes are numpy over the page's paragraphs (`classify`, `revise`).
`curation.extract.justext_paragraphs` is the reference it is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass

import justext.core
import numpy as np
from lxml.html.clean import Cleaner

from curation.extract_config import JusTextParams
from curation.justext_fast.classify import BAD, GOOD, NEARGOOD, SHORT, classify
from curation.justext_fast.revise import revise
from curation.justext_fast.segment import segment
from curation.justext_fast.text import paragraph_texts

#: Class codes -> jusText's class names.
CLASS_NAMES = {BAD: "bad", SHORT: "short", NEARGOOD: "neargood", GOOD: "good"}

# `justext.core.preprocessor`'s options. It builds a Cleaner per page and cleans a deep copy of
# the tree; one shared Cleaner (it keeps no state between calls) cleans in place instead.
_CLEANER = Cleaner(
    processing_instructions=False, remove_unknown_tags=False, safe_attrs_only=False, page_structure=False,
    annoying_tags=False, frames=False, meta=False, links=False, javascript=False, scripts=True, comments=True,
    style=True, embedded=True, forms=True, kill_tags=("head",),
)


@dataclass(frozen=True, kw_only=True)
class JusTextPage:
    """A page's paragraphs: jusText's `text`, `cf_class`, `class_type` (codes) and `heading`."""

    texts: list[str]
    cf_classes: np.ndarray
    classes: np.ndarray
    is_heading: np.ndarray

    def kept_text(self) -> str:
        """The good paragraphs joined by blank lines, as `curation.extract` joins jusText's."""
        return "\n\n".join(text for text, good in zip(self.texts, self.classes == GOOD) if good)


def fast_justext(html: str, stoplist: frozenset[str], params: JusTextParams) -> JusTextPage:
    """jusText on `html` with `stoplist` (empty: language-independent, stop-word thresholds 0).

    Raises what lxml raises on markup it cannot parse, like jusText.
    """
    root = justext.core.html_to_dom(html)
    _CLEANER(root)
    segments = segment(root)
    texts = paragraph_texts(segments.raw_texts)
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    stopwords_low, stopwords_high = params.stopword_thresholds(bool(stoplist))
    cf_classes = classify(
        texts, lengths, segments, justext.core.define_stoplist(stoplist), length_low=params.length_low,
        length_high=params.length_high, stopwords_low=stopwords_low, stopwords_high=stopwords_high,
        max_link_density=params.max_link_density)
    is_heading = np.array(segments.is_heading, dtype=bool) & (not params.no_headings)
    classes = revise(cf_classes, is_heading, lengths, max_heading_distance=params.max_heading_distance)
    return JusTextPage(texts=texts, cf_classes=cf_classes, classes=classes, is_heading=is_heading)
