import pyarrow as pa
import pytest

from curation.extract import ExtractConfig, Extractor, decode_html, parse_content_type
from curation.io.readers import RAW_WARC_SCHEMA


def _raw(rows):
    return pa.Table.from_pylist(
        [{"id": str(i), "url": f"https://x/{i}", "source": "t", "crawl_date": None, **row} for i, row in enumerate(rows)],
        schema=RAW_WARC_SCHEMA)


def _page(html_body: str) -> bytes:
    return f"<html><head><title>t</title></head><body>{html_body}</body></html>".encode()


PROSE = ("<p>The package manager keeps a list of the software that is installed on the system and of the "
         "files that belong to each package, so that it can remove them again when they are no longer "
         "needed and upgrade them when a new version of the distribution is released.</p>")


def test_real_pages_give_their_prose_and_drop_navigation(handbook_pages):
    pages = handbook_pages["en-US"][:40]
    result = Extractor().run(_raw([{"content_type": "text/html; charset=utf-8", "payload": p.read_bytes()}
                                   for p in pages]))
    assert result.kept.num_rows + result.rejected.num_rows == 40
    assert result.kept.num_rows >= 35
    text = " ".join(result.kept["text"].to_pylist())
    assert "Debian" in text
    assert "<p>" not in text and "Prev" not in text.split()  # markup and navigation links are gone


@pytest.mark.parametrize("lang_dir", ["fr-FR", "ja-JP", "ru-RU"])
def test_non_english_pages_use_their_stop_lists(handbook_pages, lang_dir):
    pages = handbook_pages[lang_dir][10:20]
    result = Extractor().run(_raw([{"content_type": "text/html", "payload": p.read_bytes()} for p in pages]))
    assert result.kept.num_rows >= 8


def test_drop_reasons_for_bad_payloads():
    rows = [
        {"content_type": "image/png", "payload": b"\x89PNG\r\n\x1a\n" + bytes(100)},
        {"content_type": "text/html", "payload": b"   "},
        {"content_type": "text/html", "payload": _page(PROSE * 3).ljust(50 * 1024 * 1024, b" ")},
        {"content_type": "text/html; charset=x-no-such-charset", "payload": _page(PROSE) + bytes([0xFF, 0xFE, 0x81]) * 50},
        {"content_type": "text/html", "payload": _page("<div><a href='/'>Home</a> | <a href='/b'>Blog</a></div>")},
        {"content_type": "text/html; charset=utf-8", "payload": _page(PROSE)},
        {"content_type": None, "payload": b"just some bytes, not a page"},
    ]
    result = Extractor().run(_raw(rows))
    reasons = dict(zip(result.rejected["id"].to_pylist(), result.rejected["drop_reason"].to_pylist()))
    assert reasons == {"0": "non_html", "1": "empty_payload", "2": "oversized", "3": "unknown_charset",
                       "4": "empty_text", "6": "non_html"}
    assert result.kept["id"].to_pylist() == ["5"]
    assert result.rejected.filter(pa.compute.equal(result.rejected["id"], "0"))["payload"][0].as_py().startswith(b"\x89PNG")


def test_charsets_from_header_meta_and_detection():
    text = "Les paquets Debian sont installés, configurés et mis à jour par dpkg et APT, très simplement."
    latin1 = f"<html><body><p>{text}</p></body></html>".encode("iso-8859-1")
    assert decode_html(latin1, "iso-8859-1")[0].count("é") == 2
    meta = f'<html><head><meta charset="iso-8859-1"></head><body><p>{text}</p></body></html>'.encode("iso-8859-1")
    assert "installés" in decode_html(meta, None)[0]
    japanese = "<html><body><p>パッケージ管理システムはソフトウェアの導入と削除を行います。</p></body></html>" * 5
    decoded, reason = decode_html(japanese.encode("shift_jis"), None)
    assert reason is None and "パッケージ" in decoded
    assert decode_html(open("/usr/bin/ls", "rb").read()[:20000], "utf-8")[1] == "undecodable"
    stray = ("<html><body><p>" + "valid text " * 100).encode() + b"\xff" + b"</p></body></html>"
    assert decode_html(stray, "utf-8") == (("<html><body><p>" + "valid text " * 100) + "\ufffd</p></body></html>", None)


def test_parse_content_type():
    assert parse_content_type("text/HTML; Charset=\"UTF-8\"") == ("text/html", "utf-8")
    assert parse_content_type(None) == (None, None)


def test_text_rows_are_normalised_and_checked():
    table = pa.table({"id": ["a", "b", "c"], "text": ["Cafe\u0301 menu ", "   ", "x" * 100]})
    result = Extractor(ExtractConfig(max_doc_bytes=50)).run(table)
    assert result.kept["text"].to_pylist() == ["Café menu"]  # NFC composes e + combining acute
    assert result.dropped_counts() == {"empty_text": 1, "oversized": 1}


def test_trafilatura_option(handbook_pages):
    pages = handbook_pages["en-US"][:5]
    result = Extractor(ExtractConfig(algorithm="trafilatura")).run(
        _raw([{"content_type": "text/html", "payload": p.read_bytes()} for p in pages]))
    assert result.kept.num_rows >= 4 and "Debian" in " ".join(result.kept["text"].to_pylist())


def test_config_errors_say_how_to_fix():
    expected = "algorithm\n  Input should be 'justext', 'justext-reference', 'trafilatura' or 'resiliparse'"
    with pytest.raises(ValueError, match=expected):
        ExtractConfig(algorithm="boilerpipe")
    with pytest.raises(ValueError, match="need length_low <= length_high"):
        ExtractConfig(justext={"length_low": 300})


def test_memoised_paragraphs_give_jusText_output_unchanged(handbook_pages):
    import justext
    import justext.core
    import justext.paragraph

    from curation.extract import MemoParagraph, justext_paragraphs
    from curation.extract_config import JusTextParams

    params = JusTextParams()
    library = {name: getattr(params, name) for name in ("length_low", "length_high", "max_link_density",
                                                         "max_heading_distance", "no_headings")}
    compared = 0
    for lang, stoplist in (("en-US", justext.get_stoplist("English")), ("de-DE", justext.get_stoplist("German")),
                           ("ja-JP", frozenset())):
        thresholds = (params.stopwords_low, params.stopwords_high) if stoplist else (0.0, 0.0)
        for page in handbook_pages[lang][60:75]:
            html = page.read_text()
            ours = justext_paragraphs(html, stoplist, params)
            theirs = justext.justext(html, stoplist, stopwords_low=thresholds[0], stopwords_high=thresholds[1], **library)
            assert [(p.text, p.class_type, p.xpath) for p in ours] == [(p.text, p.class_type, p.xpath) for p in theirs]
            assert all(type(p) is MemoParagraph for p in ours)
            compared += sum(not p.is_boilerplate for p in ours)
    assert compared >= 100
    assert justext.core.Paragraph is justext.paragraph.Paragraph  # jusText itself is left as it was
