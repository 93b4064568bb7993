"""HTML to text: decode the payload, then jusText (as Nemotron-CC) or trafilatura.

Rows that already carry `text` (JSONL/Parquet input) skip HTML handling and only get the
size, emptiness and NFC steps. Drop reasons: non_html, empty_payload, oversized,
unknown_charset, undecodable, unparseable_html, empty_text.
"""

from __future__ import annotations

import codecs
import functools
import re
import unicodedata

import charset_normalizer
import justext
import justext.core
import justext.paragraph
import pyarrow as pa
import pyarrow.compute as pc

from curation.extract_config import ExtractConfig, JusTextParams
from curation.justext_fast import fast_justext
from curation.justext_fast._lid_text import lid_text
from curation.extract_resiliparse import resiliparse_texts
from curation.langid import LID_PREFIX_CHARS, predict_languages
from curation.schema import (
    CONTENT_TYPE, CRAWL_DATE, DOCUMENT_SCHEMA, ID, PAYLOAD, SOURCE, TEXT, URL, with_document_columns,
)
from curation.stage import StageResult, split_by_reason

HTML_MIME_TYPES = ("text/html", "application/xhtml+xml")
#: A page may contain this fraction of undecodable bytes (replaced by U+FFFD) and still be kept.
MAX_REPLACED_FRACTION = 0.005
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]+)""", re.IGNORECASE)
_HTML_SNIFF = re.compile(rb"^\s*(<!doctype html|<html|<head|<body)", re.IGNORECASE)
#: lid.176 chooses jusText's stop list from the text of this many first characters of the page.
LID_HTML_CHARS = 20000

# ISO 639-1 (lid.176 labels) to jusText stop-list names.
JUSTEXT_STOPLISTS = {
    "af": "Afrikaans", "sq": "Albanian", "ar": "Arabic", "an": "Aragonese", "hy": "Armenian",
    "ast": "Asturian", "az": "Azerbaijani", "eu": "Basque", "be": "Belarusian", "bn": "Bengali",
    "bs": "Bosnian", "br": "Breton", "bg": "Bulgarian", "ca": "Catalan", "ceb": "Cebuano",
    "cv": "Chuvash", "hr": "Croatian", "cs": "Czech", "da": "Danish", "nl": "Dutch", "en": "English",
    "eo": "Esperanto", "et": "Estonian", "fi": "Finnish", "fr": "French", "gl": "Galician",
    "ka": "Georgian", "de": "German", "el": "Greek", "gu": "Gujarati", "ht": "Haitian", "he": "Hebrew",
    "hi": "Hindi", "hu": "Hungarian", "is": "Icelandic", "io": "Ido", "id": "Indonesian", "ga": "Irish",
    "it": "Italian", "jv": "Javanese", "kn": "Kannada", "kk": "Kazakh", "ko": "Korean", "ku": "Kurdish",
    "ky": "Kyrgyz", "la": "Latin", "lv": "Latvian", "lt": "Lithuanian", "lmo": "Lombard",
    "nds": "Low_Saxon", "lb": "Luxembourgish", "mk": "Macedonian", "ms": "Malay", "ml": "Malayalam",
    "mt": "Maltese", "mr": "Marathi", "nap": "Neapolitan", "ne": "Nepali", "new": "Newar",
    "no": "Norwegian_Bokmal", "nn": "Norwegian_Nynorsk", "oc": "Occitan", "fa": "Persian",
    "pms": "Piedmontese", "pl": "Polish", "pt": "Portuguese", "qu": "Quechua", "ro": "Romanian",
    "ru": "Russian", "sr": "Serbian", "sh": "Serbo_Croatian", "scn": "Sicilian", "sk": "Slovak",
    "sl": "Slovenian", "es": "Spanish", "su": "Sundanese", "sw": "Swahili", "sv": "Swedish",
    "tl": "Tagalog", "ta": "Tamil", "te": "Telugu", "tr": "Turkish", "tk": "Turkmen",
    "uk": "Ukrainian", "ur": "Urdu", "uz": "Uzbek", "vi": "Vietnamese", "vo": "Volapuk",
    "wa": "Walloon", "war": "Waray_Waray", "cy": "Welsh", "fy": "West_Frisian", "pnb": "Western_Panjabi",
    "yo": "Yoruba",
}


class Extractor:
    """Turns raw WARC rows (payload bytes) or text rows into documents with clean `text`."""

    name = "extract"

    def __init__(self, config: ExtractConfig = ExtractConfig()) -> None:
        self.config = config

    def run(self, table: pa.Table) -> StageResult:
        if PAYLOAD in table.column_names:
            return self._run_html(table)
        return self._run_text(table)

    def _run_text(self, table: pa.Table) -> StageResult:
        texts = table[TEXT].to_pylist()
        sizes = pc.binary_length(table[TEXT]).to_pylist()
        reasons: list[str | None] = []
        for i, (text, size) in enumerate(zip(texts, sizes)):
            reason = "oversized" if (size or 0) > self.config.max_doc_bytes else None
            if reason is None:
                texts[i] = unicodedata.normalize("NFC", text).strip() if text else ""
                reason = None if texts[i] else "empty_text"
            reasons.append(reason)
        table = table.set_column(table.column_names.index(TEXT), TEXT, pa.array(texts, pa.string()))
        return split_by_reason(with_document_columns(table), reasons)

    def _run_html(self, table: pa.Table) -> StageResult:
        payloads = table[PAYLOAD].to_pylist()
        content_types = table[CONTENT_TYPE].to_pylist()
        htmls: list[str | None] = [None] * table.num_rows
        reasons: list[str | None] = [None] * table.num_rows
        for i, (payload, content_type) in enumerate(zip(payloads, content_types)):
            htmls[i], reasons[i] = self._decode(payload or b"", content_type)
        texts = self._extract_texts(htmls, reasons)
        documents = pa.Table.from_arrays(
            [table[ID], pa.array(texts, pa.string()), table[URL], table[SOURCE], table[CRAWL_DATE]],
            schema=DOCUMENT_SCHEMA,
        )
        result = split_by_reason(documents, reasons)
        # Rejected rows keep their raw payload so a quarantined record can be inspected.
        dropped = pc.invert(pc.is_null(pa.array(reasons, pa.string())))
        rejected = result.rejected.append_column(PAYLOAD, table.filter(dropped)[PAYLOAD])
        return StageResult(kept=result.kept, rejected=rejected)

    def _decode(self, payload: bytes, content_type: str | None) -> tuple[str | None, str | None]:
        mime, header_charset = parse_content_type(content_type)
        if mime is None and not _HTML_SNIFF.match(payload[:512]):
            return None, "non_html" if payload.strip() else "empty_payload"
        if mime is not None and mime not in HTML_MIME_TYPES:
            return None, "non_html"
        if not payload.strip():
            return None, "empty_payload"
        if len(payload) > self.config.max_doc_bytes:
            return None, "oversized"
        return decode_html(payload, header_charset)

    def _extract_texts(self, htmls: list[str | None], reasons: list[str | None]) -> list[str | None]:
        if self.config.algorithm == "resiliparse":  # its own drop reasons: curation.extract_resiliparse
            return resiliparse_texts(htmls, reasons)
        todo = [i for i, html in enumerate(htmls) if html is not None]
        texts: list[str | None] = [None] * len(htmls)
        if self.config.algorithm in ("justext", "justext-reference"):
            visible = [lid_text(htmls[i], LID_HTML_CHARS, LID_PREFIX_CHARS) for i in todo]
            languages, _ = predict_languages(visible, self.config.lid_model_path) if todo else ([], None)
            extracted = [self._justext(htmls[i], lang) for i, lang in zip(todo, languages)]
        else:
            extracted = [_trafilatura(htmls[i]) for i in todo]
        for i, text in zip(todo, extracted):
            if text is None:
                reasons[i] = "unparseable_html"
            elif not text:
                reasons[i] = "empty_text"
            else:
                texts[i] = text
        return texts

    def _justext(self, html: str, language: str) -> str | None:
        stoplist = justext_stoplist(language)
        try:
            if self.config.algorithm == "justext":
                text = fast_justext(html, stoplist, self.config.justext).kept_text()
            else:
                paragraphs = justext_paragraphs(html, stoplist, self.config.justext)
                text = "\n\n".join(p.text for p in paragraphs if not p.is_boilerplate)
        except Exception:  # lxml raises several unrelated types on hostile markup
            return None
        return unicodedata.normalize("NFC", text).strip()


@functools.cache
def justext_stoplist(language: str) -> frozenset[str]:
    """jusText's stop list for a lid.176 language (empty when jusText has none); read once, as
    `justext.get_stoplist` reads and parses its file on every call."""
    stoplist_name = JUSTEXT_STOPLISTS.get(language)
    return justext.get_stoplist(stoplist_name) if stoplist_name else frozenset()


def justext_paragraphs(html: str, stoplist: frozenset[str], params: JusTextParams) -> list[justext.paragraph.Paragraph]:
    """`justext.justext`'s steps (parse, clean, make paragraphs, classify, revise), made with
    MemoParagraphMaker. An empty stop list runs jusText language-independent: stop-word thresholds 0.
    The reference of `curation.justext_fast` (algorithm `justext-reference`)."""
    stop_low, stop_high = params.stopword_thresholds(bool(stoplist))
    paragraphs = MemoParagraphMaker.make_paragraphs(justext.core.preprocessor(justext.core.html_to_dom(html)))
    justext.core.classify_paragraphs(
        paragraphs, stoplist, length_low=params.length_low, length_high=params.length_high, stopwords_low=stop_low,
        stopwords_high=stop_high, max_link_density=params.max_link_density, no_headings=params.no_headings)
    justext.core.revise_paragraph_classification(paragraphs, max_heading_distance=params.max_heading_distance)
    return paragraphs


class MemoParagraph(justext.paragraph.Paragraph):
    """jusText's paragraph, with its whitespace-normalised text computed once per change.

    jusText rebuilds `Paragraph.text` on every access (length, word count, stop-word density,
    link density all ask), which is half of the extraction time. `text_nodes` only grows
    through `append_text`, so its length is a complete cache key; output is unchanged
    (tests compare with `justext.justext`).
    """

    @property
    def text(self) -> str:
        if getattr(self, "_memo_nodes", -1) != len(self.text_nodes):
            self._memo_text = super().text
            self._memo_nodes = len(self.text_nodes)
        return self._memo_text


class MemoParagraphMaker(justext.core.ParagraphMaker):
    """jusText's paragraph maker, building MemoParagraphs: its own builds whatever the module-level
    `justext.core.Paragraph` is, and rebinding that would change jusText for every other caller."""

    def _start_new_pragraph(self) -> None:  # jusText's name (and spelling); the body is its own, one class changed
        if self.paragraph and self.paragraph.contains_text():
            self.paragraphs.append(self.paragraph)
        self.paragraph = MemoParagraph(self.path)


def _trafilatura(html: str) -> str | None:
    import trafilatura

    try:
        text = trafilatura.extract(html, include_comments=False, include_tables=True, deduplicate=False)
    except Exception:  # trafilatura surfaces lxml errors unchanged
        return None
    return unicodedata.normalize("NFC", text or "").strip()


def parse_content_type(content_type: str | None) -> tuple[str | None, str | None]:
    """('text/html', 'utf-8') from 'text/html; charset=UTF-8'; (None, None) when absent."""
    if not content_type:
        return None, None
    parts = [p.strip() for p in content_type.split(";")]
    mime = parts[0].lower() or None
    charset = next((p.split("=", 1)[1].strip(" \"'").lower() for p in parts[1:]
                    if p.lower().startswith("charset=")), None)
    return mime, charset or None


def _known_codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def decode_html(payload: bytes, header_charset: str | None) -> tuple[str | None, str | None]:
    """Decode with the HTTP charset, else the <meta> charset, else UTF-8, else detection.

    Returns (html, None) or (None, 'unknown_charset' | 'undecodable').
    """
    meta = _META_CHARSET.search(payload[:4096])
    declared = [header_charset, meta.group(1).decode("ascii", "ignore").lower() if meta else None]
    candidates = [c for c in (_known_codec(d) for d in declared) if c] + ["utf-8"]
    for codec in dict.fromkeys(candidates):
        try:
            return payload.decode(codec), None
        except UnicodeDecodeError:
            continue
    # Pages with a few stray bytes in an otherwise valid charset are common on the web.
    lenient = payload.decode(candidates[0], errors="replace")
    if lenient.count("\ufffd") <= MAX_REPLACED_FRACTION * len(lenient):
        return lenient, None
    best = charset_normalizer.from_bytes(payload[:65536]).best()
    if best is not None:
        try:
            return payload.decode(best.encoding), None
        except (UnicodeDecodeError, LookupError):
            pass
    unknown_label = any(d and _known_codec(d) is None for d in declared)
    return None, "unknown_charset" if unknown_label else "undecodable"
