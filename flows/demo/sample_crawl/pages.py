"""What the sample crawl serves for a planned page: payload bytes and the Content-Type it is sent with.

Clean pages are the real files (HTML docs as they are; man pages and licence texts wrapped in
simple HTML). The other variants are made from real pages the way the web makes them:
link-only index pages, stubs, pages drowned in repeated boilerplate, legacy charsets.
"""

from __future__ import annotations

import gzip
import html
import re
from dataclasses import dataclass

from flows.demo.sample_crawl.sources import LICENCE, MAN_PAGE, SourceDoc
from flows.demo.sample_crawl.troff import parse_man

# Variants, as named in the report.
CLEAN = "clean"
NAV_LINKS = "nav_links"
SHORT = "short"
BOILERPLATE = "boilerplate"
EXACT_DUPLICATE = "exact_duplicate"
LEGACY_CHARSET = "legacy_charset"
META_CHARSET_ONLY = "meta_charset_only"
NON_HTML = "non_html"

#: Python codec name -> the label a web server declares (WHATWG encoding names).
CHARSET_LABELS = {"utf-8": "UTF-8", "iso-8859-1": "ISO-8859-1", "shift_jis": "Shift_JIS", "euc_jp": "EUC-JP"}
CONTENT_TYPES_BY_SUFFIX = {".png": "image/png", ".gz": "application/gzip"}

TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.DOTALL | re.IGNORECASE)
ANCHOR = re.compile(r"<a\b[^>]*?\bhref=\"([^\"#][^\"]*)\"[^>]*>(.*?)</a>", re.DOTALL | re.IGNORECASE)
INVISIBLE = re.compile(r"<(script|style|head)\b.*?</\1>", re.DOTALL | re.IGNORECASE)
BLOCK_END = re.compile(r"</?(p|div|h[1-6]|li|tr|pre|dt|dd|br|section|table|ul|ol)\b[^>]*>", re.IGNORECASE)
TAG = re.compile(r"<[^>]+>")
#: Nav pages keep at most this many links; short pages at most this many words.
MAX_NAV_LINKS = 200
SHORT_PAGE_WORDS = 25


@dataclass(frozen=True, kw_only=True)
class PlannedPage:
    """One response to write: which document, made how, served at which URL, encoded how."""

    doc: SourceDoc
    variant: str
    url: str
    charset: str = "utf-8"


@dataclass(frozen=True, kw_only=True)
class Response:
    payload: bytes
    content_type: str  # the HTTP header value, with or without a charset parameter
    identified_type: str  # what CC's content sniffing reports (WARC-Identified-Payload-Type)
    charset: str  # label of the payload's encoding; "" for binary payloads


def render(page: PlannedPage) -> Response:
    if page.variant == NON_HTML:
        return _doc_file_response(page.doc)
    if page.variant in (NAV_LINKS, SHORT, BOILERPLATE):
        return _html_response(_low_quality_html(page), "utf-8")
    if page.variant == LEGACY_CHARSET:
        return _html_response(man_html(page.doc, meta_charset=None), page.charset)
    if page.variant == META_CHARSET_ONLY:
        response = _html_response(man_html(page.doc, meta_charset="utf-8"), "utf-8")
        return Response(payload=response.payload, content_type="text/html", identified_type="text/html",
                        charset=response.charset)
    return _html_response(clean_html(page.doc), "utf-8")


def clean_html(doc: SourceDoc) -> str:
    if doc.source == MAN_PAGE:
        return man_html(doc, meta_charset="utf-8")
    if doc.source == LICENCE:
        return _licence_html(doc)
    return doc.path.read_bytes().decode("utf-8", errors="replace")


def man_html(doc: SourceDoc, *, meta_charset: str | None) -> str:
    page = parse_man(gzip.decompress(doc.path.read_bytes()).decode("utf-8", errors="replace"))
    name = doc.path.name.removesuffix(".gz")
    body = "\n".join(f"<{tag}>{html.escape(text, quote=False)}</{tag}>" for tag, text in page.blocks)
    return _html_document(language=doc.language, title=f"{page.title or name} - Debian Manpages",
                          body=f"<h1>{html.escape(page.title or name)}</h1>\n{body}", meta_charset=meta_charset)


def is_man_redirect(doc: SourceDoc) -> bool:
    """`.so other.1` pages only point at another page: a crawler would follow, not store them."""
    head = gzip.decompress(doc.path.read_bytes())[:200].lstrip()
    return head.startswith(b".so ") or len(head) == 0


def legacy_charset_for(doc: SourceDoc, candidates: tuple[str, ...]) -> str | None:
    """The first charset that encodes the whole page, or None (a page is never served lossy)."""
    text = man_html(doc, meta_charset=None)
    for charset in candidates:
        try:
            text.encode(charset)
        except UnicodeEncodeError:
            continue
        return charset
    return None


def _html_response(text: str, charset: str) -> Response:
    label = CHARSET_LABELS[charset]
    return Response(payload=text.encode(charset), content_type=f"text/html; charset={label}",
                    identified_type="text/html", charset=label)


def _doc_file_response(doc: SourceDoc) -> Response:
    payload = doc.path.read_bytes()
    content_type = CONTENT_TYPES_BY_SUFFIX.get(doc.path.suffix)
    if content_type:
        return Response(payload=payload, content_type=content_type, identified_type=content_type, charset="")
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:  # servers send undeclared text as bare text/plain
        return Response(payload=payload, content_type="text/plain", identified_type="text/plain", charset="")
    return Response(payload=payload, content_type="text/plain; charset=utf-8", identified_type="text/plain",
                    charset="UTF-8")


def _licence_html(doc: SourceDoc) -> str:
    text = doc.path.read_bytes().decode("utf-8", errors="replace")
    package = doc.url.split("/src/")[1].split("/")[0]
    title = f"{doc.path.name} \u2014 {package} \u2014 Debian Sources"
    return _html_document(language="en", title=title, meta_charset="utf-8",
                          body=f"<h1>{html.escape(title)}</h1>\n<pre>{html.escape(text, quote=False)}</pre>")


def _low_quality_html(page: PlannedPage) -> str:
    source = clean_html(page.doc)
    title = _title(source)
    if page.variant == NAV_LINKS:
        items = "\n".join(f'<li><a href="{html.escape(href)}">{html.escape(text)}</a></li>'
                          for href, text in _links(source))
        body = f"<h1>{html.escape(title)}</h1>\n<nav><ul>\n{items}\n</ul></nav>"
    elif page.variant == SHORT:
        body = f"<h1>{html.escape(title)}</h1>\n<p>{html.escape(_first_words(source))}</p>"
    else:
        body = _boilerplate_body(title, visible_lines(source))
    return _html_document(language=page.doc.language, title=title, body=body, meta_charset="utf-8")


def _boilerplate_body(title: str, lines: list[str]) -> str:
    """A little real text between the page's own shortest lines (its menu labels) repeated 12 times."""
    menu = sorted(set(lines), key=lambda line: (len(line), line))[:4]
    content = [line for line in lines if len(line.split()) >= 8][:3]
    repeated = [f"<p>{html.escape(line)}</p>" for _ in range(12) for line in menu]
    paragraphs = [f"<p>{html.escape(line)}</p>" for line in content]
    footer = [f"<p>{html.escape(title)}</p>"] * 12
    return "\n".join(repeated + paragraphs + footer)


def visible_lines(source: str) -> list[str]:
    text = TAG.sub(" ", BLOCK_END.sub("\n", INVISIBLE.sub(" ", source)))
    return [" ".join(line.split()) for line in html.unescape(text).splitlines() if line.strip()]


def _links(source: str) -> list[tuple[str, str]]:
    links = {}
    for href, inner in ANCHOR.findall(source):
        text = " ".join(html.unescape(TAG.sub(" ", inner)).split())
        if text and href not in links:
            links[href] = text
    return list(links.items())[:MAX_NAV_LINKS]


def _first_words(source: str) -> str:
    prose = [line for line in visible_lines(source) if len(line.split()) >= 6]
    return " ".join(" ".join(prose[:1]).split()[:SHORT_PAGE_WORDS])


def _title(source: str) -> str:
    match = TITLE.search(source)
    return " ".join(html.unescape(TAG.sub(" ", match[1])).split()) if match else ""


def _html_document(*, language: str, title: str, body: str, meta_charset: str | None) -> str:
    meta = f'<meta charset="{meta_charset}">\n' if meta_charset else ""
    return (f'<!DOCTYPE html>\n<html lang="{language}">\n<head>\n{meta}<title>{html.escape(title)}</title>\n'
            f"</head>\n<body>\n{body}\n</body>\n</html>\n")
