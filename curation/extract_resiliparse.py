"""HTML to text with Resiliparse, as DataComp-LM's baseline extracts it (Li et al. 2024:
`extract_plain_text(main_content=True)`): one lexbor parse, no language needed.

Its drop reasons beside the extract stage's: `unparseable_html` when lexbor refuses the page,
`empty_text` when the page shows no text at all, and `empty_main_content` when it does but the
main-content heuristics keep none of it (navigation-only or boilerplate-only pages): a different
finding about the crawl, so it is counted apart.
"""

from __future__ import annotations

import unicodedata

from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.html import HTMLParserException, HTMLTree


def resiliparse_text(html: str) -> tuple[str | None, str | None]:
    """(text, None) or (None, drop reason) for one decoded HTML page."""
    try:
        tree = HTMLTree.parse(html)
    except HTMLParserException:
        return None, "unparseable_html"
    text = unicodedata.normalize("NFC", extract_plain_text(tree, main_content=True)).strip()
    if text:
        return text, None
    # Only for the rare empty extract: is it the heuristics or the page?
    return None, "empty_main_content" if extract_plain_text(tree, main_content=False).strip() else "empty_text"


def resiliparse_texts(htmls: list[str | None], reasons: list[str | None]) -> list[str | None]:
    """The text of every decoded page (None where `htmls` has none); drop reasons go into `reasons`."""
    texts: list[str | None] = [None] * len(htmls)
    for i, html in enumerate(htmls):
        if html is not None:
            texts[i], reasons[i] = resiliparse_text(html)
    return texts
