"""What the paragraph walk needs to know of a tag: its kind for jusText's `ParagraphMaker`, two
flags of jusText's `dom_path`, and what jusText's `Cleaner` does to it.

jusText's `dom_path` joins local names with '.', so its substring and word-boundary tests come
down to tests on each name.
"""

from __future__ import annotations

import justext.core
import justext.paragraph
from lxml.html import HtmlElement

OTHER, PARAGRAPH, BR, LINK = range(4)
# What jusText's Cleaner does to a tag: keep it, kill it (subtree gone, tail kept), remove it (tag
# gone, text, children and tail kept); a `<link>` dies when it is a stylesheet, a `<param>` is
# removed inside an `<object>` (or an `<applet>`, itself killed) and killed elsewhere.
KEEP, KILL, REMOVE, LINK_TAG, PARAM = range(5)
_KILLED = frozenset({"head", "script", "style", "applet", "button", "input", "select", "textarea", "base"})
_REMOVED = frozenset({"iframe", "embed", "layer", "object", "form"})


def tag_info(tag: str) -> tuple[int, int, int, int]:
    """(kind, path contains "select", path is a heading, cleaning) of an lxml tag ('{ns}name' or 'name')."""
    name = tag.rpartition("}")[2]  # lxml.sax passes the local name of '{ns}name'
    kind = (PARAGRAPH if name in justext.core.PARAGRAPH_TAGS else
            BR if name == "br" else LINK if name == "a" else OTHER)
    cleaning = (KILL if tag in _KILLED else REMOVE if tag in _REMOVED else LINK_TAG if tag == "link" else
                PARAM if tag == "param" else KEEP)
    return kind, int("select" in name), int(bool(justext.paragraph.HEADINGS_PATTERN.search(name))), cleaning


def element_cleaning(element: HtmlElement, cleaning: int, in_object: bool) -> int:
    """KEEP, KILL or REMOVE for `element`, whose tag says `cleaning`."""
    if cleaning == LINK_TAG:
        return KILL if "stylesheet" in element.get("rel", "").lower() else KEEP
    if cleaning == PARAM:
        return REMOVE if in_object else KILL
    return cleaning
