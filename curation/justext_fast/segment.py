"""Paragraphs of a cleaned page, cut exactly where jusText's `ParagraphMaker` cuts them.

jusText walks the tree through `lxml.sax` (a Python call per element and per text node)
and re-joins and re-normalises a paragraph's text on every access. Here one
`lxml.etree.iterwalk` pass keeps, per paragraph, only what classification reads: the raw
text nodes, the characters inside links, and two flags of the element path the paragraph
starts on (a `select` tag, a heading tag). Whitespace is normalised later, for the whole page
at once (`classify.normalise_page`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import justext.core
import justext.paragraph
from lxml import etree
from lxml.html import HtmlElement

from curation.justext_fast.text import normalise_whitespace

_OTHER, _PARAGRAPH, _BR, _LINK = range(4)
#: tag -> (kind, path contains "select", path is a heading) for tags seen so far; bounded below.
_TAG_INFO: dict[object, tuple[int, int, int]] = {}
_MAX_CACHED_TAGS = 4096


@dataclass(kw_only=True)
class Segments:
    """A page's paragraphs in document order, as parallel lists."""

    raw_texts: list[str] = field(default_factory=list)  # text nodes joined and stripped, not yet normalised
    link_chars: list[int] = field(default_factory=list)  # jusText's `chars_count_in_links`
    in_select: list[bool] = field(default_factory=list)  # 'select' in jusText's `dom_path` (such paragraphs are bad)
    is_heading: list[bool] = field(default_factory=list)  # jusText's `HEADINGS_PATTERN` matches `dom_path`

    def close(self, nodes: list[str], link_chars: int, in_select: bool, is_heading: bool) -> None:
        """End the current paragraph. jusText keeps it when its text is not empty (`Paragraph`
        has a `__len__`, so `if self.paragraph` tests the text): a paragraph of `<br>` spaces is lost."""
        raw_text = "".join(nodes).strip()
        if raw_text:
            self.raw_texts.append(raw_text)
            self.link_chars.append(link_chars)
            self.in_select.append(in_select)
            self.is_heading.append(is_heading)


def _tag_info(tag: object) -> tuple[int, int, int]:
    """What the walk needs to know of a tag; jusText's `dom_path` joins local names with '.',
    so its substring and word-boundary tests come down to tests on each name."""
    info = _TAG_INFO.get(tag)
    if info is None:
        name = str(tag).rpartition("}")[2]  # lxml.sax passes the local name of '{ns}name'
        kind = (_PARAGRAPH if name in justext.core.PARAGRAPH_TAGS else
                _BR if name == "br" else _LINK if name == "a" else _OTHER)
        info = (kind, int("select" in name), int(bool(justext.paragraph.HEADINGS_PATTERN.search(name))))
        if len(_TAG_INFO) >= _MAX_CACHED_TAGS:
            _TAG_INFO.clear()
        _TAG_INFO[tag] = info
    return info


def segment(root: HtmlElement) -> Segments:
    """The paragraphs `justext.core.ParagraphMaker.make_paragraphs(root)` would make.

    Events come in `lxml.sax.saxify` order: an element's start, its text, its children, its
    end, its tail. A paragraph tag (or a second consecutive `<br>`) closes the current paragraph
    on start and on end; a single `<br>` adds a ' ' text node. The cleaned tree holds no
    comments, and libxml2's HTML parser turns processing instructions into comments, so
    elements are all the walk sees.
    """
    page = Segments()
    nodes: list[str] = []
    links = open_select = open_heading = 0
    para_select = para_heading = in_link = br = False
    for event, element in etree.iterwalk(root, events=("start", "end")):
        kind, select, heading = _TAG_INFO.get(element.tag) or _tag_info(element.tag)
        if event == "start":
            open_select += select
            open_heading += heading
            if kind == _PARAGRAPH or (kind == _BR and br):
                page.close(nodes, links, para_select, para_heading)
                nodes, links = [], 0
                para_select, para_heading = open_select > 0, open_heading > 0
            else:
                br = kind == _BR
                if br:
                    nodes.append(" ")
                elif kind == _LINK:
                    in_link = True
            content = element.text
        else:
            open_select -= select
            open_heading -= heading
            if kind == _PARAGRAPH:
                page.close(nodes, links, para_select, para_heading)
                nodes, links = [], 0
                para_select, para_heading = open_select > 0, open_heading > 0
            elif kind == _LINK:
                in_link = False
            content = element.tail
        if content and not content.isspace():
            nodes.append(content)
            if in_link:
                links += len(normalise_whitespace(content))
            br = False
    page.close(nodes, links, para_select, para_heading)
    return page
