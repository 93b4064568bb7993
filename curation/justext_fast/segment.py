"""Paragraphs of a cleaned page, cut exactly where jusText's `ParagraphMaker` cuts them.

jusText walks the tree through `lxml.sax` (a Python call per element and per text node)
and re-joins and re-normalises a paragraph's text on every access. Here one walk over
libxml2's nodes in C (`_walk`, Cython) keeps, per paragraph, only what classification reads: the raw
text nodes, the characters inside links, and two flags of the element path the paragraph
starts on (a `select` tag, a heading tag). Whitespace is normalised later, for the whole page
at once (`_text.page_statistics`).

The same pass does jusText's cleaning (`justext.core.preprocessor`'s `Cleaner` options) as it
goes: the Cleaner drops some elements with their subtree and tail-joins the rest ("kill":
head, script, style, comments, form controls, ...) and unwraps others ("remove": form, iframe,
object, ...), both of which only merge the neighbouring text. The walk therefore skips killed
subtrees, ignores removed tags' start and end, and hands the text between two kept tags to
jusText as one text node, as the cleaned tree would. When the root itself would be cleaned
(a fragment such as a lone `<form>`), the Cleaner runs first, as it rewrites the root.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml.html import HtmlElement
from lxml.html.clean import Cleaner

from curation.justext_fast._walk import walk
from curation.justext_fast.tags import KEEP, element_cleaning, tag_info


@dataclass(frozen=True, kw_only=True)
class Segments:
    """A page's paragraphs in document order, as parallel lists."""

    raw_texts: list[str]  # text nodes joined and stripped, not yet normalised
    link_chars: list[int]  # jusText's `chars_count_in_links`
    in_select: list[bool]  # 'select' in jusText's `dom_path` (such paragraphs are bad)
    is_heading: list[bool]  # jusText's `HEADINGS_PATTERN` matches `dom_path`


# `justext.core.preprocessor`'s options. It builds a Cleaner per page; this one (it keeps no state
# between calls) cleans only pages whose root it would rewrite.
_CLEANER = Cleaner(
    processing_instructions=False, remove_unknown_tags=False, safe_attrs_only=False, page_structure=False,
    annoying_tags=False, frames=False, meta=False, links=False, javascript=False, scripts=True, comments=True,
    style=True, embedded=True, forms=True, kill_tags=("head",),
)


def segment(root: HtmlElement) -> Segments:
    """The paragraphs `justext.core.ParagraphMaker.make_paragraphs` makes of `root` cleaned by
    `justext.core.preprocessor` (`root` itself is left as it is).

    Events come in `lxml.sax.saxify` order: an element's start, its text, its children, its
    end, its tail. A paragraph tag (or a second consecutive `<br>`) closes the current paragraph
    on start and on end; a single `<br>` adds a ' ' text node. libxml2's HTML parser turns
    processing instructions into comments, so elements and comments are all the walk sees.
    """
    if element_cleaning(root, tag_info(root.tag)[3], False) != KEEP:
        root = _CLEANER.clean_html(root)  # on a copy, as jusText: a copied root has no parent to leave
    raw_texts, link_chars, in_select, is_heading = walk(root)
    return Segments(raw_texts=raw_texts, link_chars=link_chars, in_select=in_select, is_heading=is_heading)
