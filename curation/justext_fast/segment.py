"""Paragraphs of a cleaned page, cut exactly where jusText's `ParagraphMaker` cuts them.

jusText walks the tree through `lxml.sax` (a Python call per element and per text node)
and re-joins and re-normalises a paragraph's text on every access. Here one
`lxml.etree.iterwalk` pass keeps, per paragraph, only what classification reads: the raw
text nodes, the characters inside links, and two flags of the element path the paragraph
starts on (a `select` tag, a heading tag). Whitespace is normalised later, for the whole page
at once (`text.paragraph_texts`).

The same pass does jusText's cleaning (`justext.core.preprocessor`'s `Cleaner` options) as it
goes: the Cleaner drops some elements with their subtree and tail-joins the rest ("kill":
head, script, style, comments, form controls, ...) and unwraps others ("remove": form, iframe,
object, ...), both of which only merge the neighbouring text. The walk therefore skips killed
subtrees, ignores removed tags' start and end, and hands the text between two kept tags to
jusText as one text node, as the cleaned tree would. When the root itself would be cleaned
(a fragment such as a lone `<form>`), the Cleaner runs first, as it rewrites the root.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import justext.core
import justext.paragraph
from lxml import etree
from lxml.html import HtmlElement
from lxml.html.clean import Cleaner

from curation.justext_fast.text import normalised_length

_OTHER, _PARAGRAPH, _BR, _LINK = range(4)
# What jusText's Cleaner does to a tag: keep it, kill it (subtree gone, tail kept), remove it (tag
# gone, text, children and tail kept); a `<link>` dies when it is a stylesheet, a `<param>` is
# removed inside an `<object>` (or an `<applet>`, itself killed) and killed elsewhere.
_KEEP, _KILL, _REMOVE, _LINK_TAG, _PARAM = range(5)
_KILLED = frozenset({"head", "script", "style", "applet", "button", "input", "select", "textarea", "base"})
_REMOVED = frozenset({"iframe", "embed", "layer", "object", "form"})
#: tag -> (kind, path contains "select", path is a heading, cleaning) for tags seen so far; bounded below.
_TAG_INFO: dict[object, tuple[int, int, int, int]] = {}
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


# `justext.core.preprocessor`'s options. It builds a Cleaner per page; this one (it keeps no state
# between calls) cleans only pages whose root it would rewrite.
_CLEANER = Cleaner(
    processing_instructions=False, remove_unknown_tags=False, safe_attrs_only=False, page_structure=False,
    annoying_tags=False, frames=False, meta=False, links=False, javascript=False, scripts=True, comments=True,
    style=True, embedded=True, forms=True, kill_tags=("head",),
)


def _tag_info(tag: object) -> tuple[int, int, int, int]:
    """What the walk needs to know of a tag; jusText's `dom_path` joins local names with '.',
    so its substring and word-boundary tests come down to tests on each name."""
    info = _TAG_INFO.get(tag)
    if info is None:
        name = str(tag).rpartition("}")[2]  # lxml.sax passes the local name of '{ns}name'
        kind = (_PARAGRAPH if name in justext.core.PARAGRAPH_TAGS else
                _BR if name == "br" else _LINK if name == "a" else _OTHER)
        cleaning = (_KILL if tag in _KILLED else _REMOVE if tag in _REMOVED else _LINK_TAG if tag == "link" else
                    _PARAM if tag == "param" else _KEEP)
        info = (kind, int("select" in name), int(bool(justext.paragraph.HEADINGS_PATTERN.search(name))), cleaning)
        if len(_TAG_INFO) >= _MAX_CACHED_TAGS:
            _TAG_INFO.clear()
        _TAG_INFO[tag] = info
    return info


def _cleaning(element: HtmlElement, cleaning: int, in_object: bool) -> int:
    """_KEEP, _KILL or _REMOVE for `element`, whose tag says `cleaning`."""
    if cleaning == _LINK_TAG:
        return _KILL if "stylesheet" in element.get("rel", "").lower() else _KEEP
    if cleaning == _PARAM:
        return _REMOVE if in_object else _KILL
    return cleaning


def segment(root: HtmlElement) -> Segments:
    """The paragraphs `justext.core.ParagraphMaker.make_paragraphs` makes of `root` cleaned by
    `justext.core.preprocessor` (`root` itself is left as it is).

    Events come in `lxml.sax.saxify` order: an element's start, its text, its children, its
    end, its tail. A paragraph tag (or a second consecutive `<br>`) closes the current paragraph
    on start and on end; a single `<br>` adds a ' ' text node. libxml2's HTML parser turns
    processing instructions into comments, so elements and comments are all the walk sees.
    """
    if _cleaning(root, _tag_info(root.tag)[3], False) != _KEEP:
        root = _CLEANER.clean_html(root)  # on a copy, as jusText: a copied root has no parent to leave
    page = Segments()
    nodes: list[str] = []
    pending = ""  # the text since the last kept tag: one text node of the cleaned tree
    links = open_select = open_heading = open_objects = 0
    para_select = para_heading = in_link = br = False
    walk = etree.iterwalk(root, events=("start", "end", "comment"))
    for event, element in walk:
        if event == "comment":  # killed
            pending += element.tail or ""
            continue
        tag = element.tag  # lxml builds a new str on each access
        kind, select, heading, cleaning = _TAG_INFO.get(tag) or _tag_info(tag)
        if cleaning != _KEEP:
            cleaning = _cleaning(element, cleaning, open_objects > 0)
            if cleaning == _KILL:
                if event == "start":
                    walk.skip_subtree()  # its end event still comes
                else:
                    pending += element.tail or ""
                continue
            if cleaning == _REMOVE:
                if tag == "object":
                    open_objects += 1 if event == "start" else -1
                pending += (element.text if event == "start" else element.tail) or ""
                continue
        if pending:
            if not pending.isspace():
                nodes.append(pending)
                if in_link:
                    links += normalised_length(pending)
                br = False
            pending = ""
        if event == "start":
            open_select += select
            open_heading += heading
            if kind == _PARAGRAPH or (kind == _BR and br):
                if nodes:
                    page.close(nodes, links, para_select, para_heading)
                    nodes, links = [], 0
                para_select, para_heading = open_select > 0, open_heading > 0
            else:
                br = kind == _BR
                if br:
                    nodes.append(" ")
                elif kind == _LINK:
                    in_link = True
            pending = element.text or ""
        else:
            open_select -= select
            open_heading -= heading
            if kind == _PARAGRAPH:
                if nodes:
                    page.close(nodes, links, para_select, para_heading)
                    nodes, links = [], 0
                para_select, para_heading = open_select > 0, open_heading > 0
            elif kind == _LINK:
                in_link = False
            pending = element.tail or ""
    if pending and not pending.isspace():
        nodes.append(pending)
        if in_link:
            links += normalised_length(pending)
    page.close(nodes, links, para_select, para_heading)
    return page
