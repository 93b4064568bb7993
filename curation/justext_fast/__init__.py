"""jusText 3.0.2, fast: the same paragraphs, classes and text, without Python work per word.

Parsing is `justext.core.html_to_dom`'s (`html_to_dom` below, with a C-level element class
lookup); cleaning (jusText's `Cleaner` options) and paragraphs come from one walk over
libxml2's nodes in C (`segment`, Cython), whitespace and word statistics from one C pass
over the whole page (`_text`), and both classification passes are C loops over the page's
paragraph arrays (`classify`).
`curation.extract.justext_paragraphs` is the reference it is tested against.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import justext.core
import lxml.html
import numpy as np
from lxml import etree

from curation.extract_config import JusTextParams
from curation.justext_fast._text import page_statistics
from curation.justext_fast.classify import BAD, GOOD, NEARGOOD, SHORT, classify, revise
from curation.justext_fast.segment import segment

#: Class codes -> jusText's class names.
CLASS_NAMES = {BAD: "bad", SHORT: "short", NEARGOOD: "neargood", GOOD: "good"}

# `lxml.html.HTMLParser` picks each element's class through a Python callback (a third of the parse
# and walk time); every element here is an HtmlElement instead, which is all the Cleaner and the walk
# use (the callback's special classes add form helpers, nothing to the tree itself).
_ELEMENT_CLASSES = etree.ElementDefaultClassLookup(
    element=lxml.html.HtmlElement, comment=lxml.html.HtmlComment, pi=lxml.html.HtmlProcessingInstruction,
    entity=lxml.html.HtmlEntity)


def html_to_dom(html: str) -> lxml.html.HtmlElement:
    """`justext.core.html_to_dom(html)`: the same tree, parsed by a parser with `_ELEMENT_CLASSES`."""
    parser = etree.HTMLParser()
    parser.set_element_class_lookup(_ELEMENT_CLASSES)
    try:
        return lxml.html.fromstring(html, parser=parser)
    except ValueError:  # a str with an XML encoding declaration; jusText retries with its UTF-8 bytes
        return lxml.html.fromstring(html.encode(justext.core.DEFAULT_ENCODING, justext.core.DEFAULT_ENC_ERRORS),
                                    parser=parser)


#: `justext.core.define_stoplist` (the lower-cased stop list) once per stop list, not once per page
_lower_case_stoplist = functools.lru_cache(maxsize=64)(justext.core.define_stoplist)


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
    root = html_to_dom(html)
    segments = segment(root)
    texts, lengths, words, stops = page_statistics(segments.raw_texts, _lower_case_stoplist(stoplist))
    stopwords_low, stopwords_high = params.stopword_thresholds(bool(stoplist))
    cf_classes = classify(
        texts, lengths, words, stops, segments.link_chars, segments.in_select, length_low=params.length_low,
        length_high=params.length_high, stopwords_low=stopwords_low, stopwords_high=stopwords_high,
        max_link_density=params.max_link_density)
    is_heading = np.array(segments.is_heading, dtype=bool) & (not params.no_headings)
    classes = revise(cf_classes, is_heading, lengths, max_heading_distance=params.max_heading_distance)
    return JusTextPage(texts=texts, cf_classes=cf_classes, classes=classes, is_heading=is_heading)
