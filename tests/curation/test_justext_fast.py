"""The fast jusText (`curation.justext_fast`) against the jusText library (`justext-reference`).

Byte-for-byte identity of the extracted text on the sample crawl and on >= 2,000 real pages of
the machine's documentation packages, with every page that differs listed below with its reason;
paragraph-level identity (text, both classes, heading flag) on hand-written markup that exercises
jusText's corner cases.
"""

import glob
import re
from pathlib import Path

import justext
import pyarrow as pa
import pytest

from curation.extract import ExtractConfig, Extractor, justext_paragraphs
from curation.extract_config import JusTextParams
from curation.io.readers import RAW_WARC_SCHEMA, read_warc
from curation.extract import LID_HTML_CHARS, decode_html
from curation.justext_fast import CLASS_NAMES, fast_justext
from curation.justext_fast._lid_text import lid_text
from curation.langid import LID_PREFIX_CHARS

#: Pages (url) whose fast text differs from jusText's, and why. A difference not listed here
#: fails the test, and so does a listed page that no longer differs. None are known today.
KNOWN_DIFFERENCES: dict[str, str] = {}
MIN_IDENTICAL = 0.995
DOC_DIRS = ("/usr/share/doc/python3.11-doc/html", "/usr/share/doc/postgresql-doc-15/html",
            "/usr/share/doc/debian-handbook/html")

ENGLISH = justext.get_stoplist("English")
PROSE = ("The package manager keeps a list of the software that is installed on the system and of the files "
         "that belong to each package, so that it can remove them again when they are no longer needed.")


@pytest.fixture(scope="module")
def sample_crawl_rows(tmp_path_factory) -> pa.Table:
    """The WARC responses of a 1,000-page sample crawl (what `ccforge sample-corpus` writes)."""
    from flows.demo.sample_crawl import build_sample_corpus

    crawl = tmp_path_factory.mktemp("justext_sample") / "crawl"
    build_sample_corpus(crawl, max_records=1000, num_files=2, seed=0, install_missing=False)
    return pa.concat_tables([batch.table for path in sorted(crawl.glob("*.warc.gz"))
                             for batch in read_warc(str(path), source="sample")])


@pytest.fixture(scope="module")
def doc_page_rows() -> pa.Table:
    """All Python and PostgreSQL manual pages and every third Debian handbook page (all languages)."""
    paths = [p for d in DOC_DIRS[:2] for p in sorted(glob.glob(f"{d}/**/*.html", recursive=True))]
    paths += sorted(glob.glob(f"{DOC_DIRS[2]}/**/*.html", recursive=True))[::3]
    assert len(paths) >= 2000, f"too few pages in {DOC_DIRS}: apt-get install python3.11-doc postgresql-doc-15 debian-handbook"
    rows = [{"id": path, "url": f"file://{path}", "source": "docs", "crawl_date": None, "content_type": "text/html",
             "payload": Path(path).read_bytes()} for path in paths]
    return pa.Table.from_pylist(rows, schema=RAW_WARC_SCHEMA)


def _outcomes(table: pa.Table, algorithm: str) -> dict[str, str]:
    """url -> extracted text, or the drop reason, for every row."""
    result = Extractor(ExtractConfig(algorithm=algorithm)).run(table)
    urls = dict(zip(table["id"].to_pylist(), table["url"].to_pylist()))
    kept = {urls[i]: text for i, text in zip(result.kept["id"].to_pylist(), result.kept["text"].to_pylist())}
    dropped = {urls[i]: f"dropped: {reason}" for i, reason in zip(result.rejected["id"].to_pylist(),
                                                                  result.rejected["drop_reason"].to_pylist())}
    assert len(kept) + len(dropped) == table.num_rows, "urls are not unique"
    return kept | dropped


@pytest.mark.parametrize("rows", ["sample_crawl_rows", "doc_page_rows"])
def test_fast_text_equals_jusText_byte_for_byte(rows, request):
    table = request.getfixturevalue(rows)
    fast, reference = _outcomes(table, "justext"), _outcomes(table, "justext-reference")
    assert fast.keys() == reference.keys()
    differing = {url for url in fast if fast[url].encode() != reference[url].encode()}
    unexplained = sorted(differing - KNOWN_DIFFERENCES.keys())
    assert not unexplained, f"{len(unexplained)} pages differ from jusText, first {unexplained[:5]}"
    resolved = sorted(KNOWN_DIFFERENCES.keys() & (fast.keys() - differing))
    assert not resolved, f"pages listed in KNOWN_DIFFERENCES no longer differ: {resolved}"
    assert len(differing) <= (1 - MIN_IDENTICAL) * len(fast)
    extracted = sum(not text.startswith("dropped: ") for text in reference.values())
    assert extracted >= 800  # the comparison is about real extracted text (the crawl also has images, PDFs...)


#: What `lid_text` computes, as the regex the extractor used before it (and jusText users write).
VISIBLE_TEXT_REGEX = re.compile(r"<script.*?</script>|<style.*?</style>|<[^>]+>|&[a-z#0-9]+;", re.IGNORECASE | re.DOTALL)
LID_TEXT_CASES = [
    "<ſcrİpt>a</SCRıPT>b", "&ſK;&İı;x", "<>a<b>c", "<script>never closed <b>bold</b>", "<style>a</style",
    "a&b;c&;d&#12;e& x;&amp", "<STYLE>x</sTyLe>y", "", "<", "&", "<scrip", "x" * 5000, "<b" + "y" * 30000 + ">",
    "<p>" + "é" * 3990 + "&eacute;<i>more</i>", "<script>" + "z" * 25000 + "</script>after",
]


def _lid_text_by_regex(html: str) -> str:
    return VISIBLE_TEXT_REGEX.sub(" ", html[:LID_HTML_CHARS])[:LID_PREFIX_CHARS]


@pytest.mark.parametrize("html", LID_TEXT_CASES)
def test_lid_text_equals_the_regex_on_edge_cases(html):
    assert lid_text(html, LID_HTML_CHARS, LID_PREFIX_CHARS) == _lid_text_by_regex(html)


@pytest.mark.parametrize("rows", ["sample_crawl_rows", "doc_page_rows"])
def test_lid_text_equals_the_regex_on_real_pages(rows, request):
    table = request.getfixturevalue(rows)
    htmls = [decode_html(payload, None)[0] for payload in table["payload"].to_pylist() if payload]
    htmls = [html for html in htmls if html]
    assert len(htmls) >= 900
    differing = [i for i, html in enumerate(htmls)
                 if lid_text(html, LID_HTML_CHARS, LID_PREFIX_CHARS) != _lid_text_by_regex(html)]
    assert not differing, f"{len(differing)} pages differ, first {differing[:5]}"


def _paragraphs_both_ways(html: str, stoplist: frozenset[str], params: JusTextParams = JusTextParams()):
    ours = fast_justext(html, stoplist, params)
    theirs = justext_paragraphs(html, stoplist, params)
    fast = [(text, CLASS_NAMES[cf], CLASS_NAMES[final], bool(heading))
            for text, cf, final, heading in zip(ours.texts, ours.cf_classes, ours.classes, ours.is_heading)]
    reference = [(p.text, p.cf_class, p.class_type, p.heading) for p in theirs]
    kept = "\n\n".join(p.text for p in theirs if not p.is_boilerplate)
    return fast, reference, ours.kept_text(), kept


TRICKY_PAGES = {
    "br_splits": f"<body><div>{PROSE}<br><br>{PROSE} second<br>one break<br> <br>blank between"
                 f"<br><span></span><br>tag between<br><br><br>three</div></body>",
    "br_only_paragraph": f"<body><div><p>{PROSE}</p></div><br class='x'/><p>{PROSE}</p></body>",
    "headings": f"<body><h2>Installing packages</h2><p>{PROSE}</p><h3><span>Nested</span> heading</h3>"
                f"<p>Short one.</p><p>{'Filler without stop words. ' * 12}</p><p>{PROSE} {PROSE}</p>"
                f"<h1>Far heading</h1>{'<p>x y z w v</p>' * 50}<p>{PROSE} {PROSE}</p><x-h4>custom</x-h4></body>",
    "links": f"<body><p>{PROSE} <a href='/a'>a link in prose</a> and more.</p><p><a href='/'>Home</a> | "
             f"<a href='/b'>Blog <b>bold</b></a></p><p>Short <a href='/c'>link</a>.</p>"
             f"<div><a href='/d'>  spaced\n\n  link  text  </a>{PROSE}</div></body>",
    "nested_inline": f"<body><p>a<b>b<i>c</i>d</b>e <em>{PROSE}</em><code>x</code></p><li>item<ul><li>{PROSE}"
                     f"</li></ul>tail of outer item</li></body>",
    "whitespace": f"<body><p>\r\n  {PROSE}\t\t{PROSE}\x0b\x0c end</p><p>nbsp\xa0\xa0words\u2028line\u3000ideo "
                  f"{PROSE}\r</p><pre>  keep\n\n\n  lines  </pre><p> \n </p><p>x\x1cy\x85z {PROSE}</p></body>",
    "non_ascii": f"<body><p>ΟΔΟΣ ΚΑΙ ΤΟ ΣΠΙΤΙ ΤΗΣ {PROSE.upper()}</p><p>İstanbul ÇAĞRI Straße {PROSE}</p>"
                 f"<p>パッケージ管理システムはソフトウェアの導入と削除を行います。</p></body>",
    "copyright_and_select": f"<body><p>{PROSE} \xa9 2024</p><p>{PROSE} &amp;copy; 2024</p>"
                            f"<my-select><p>{PROSE}</p></my-select><form>in a form <select><option>o</option>"
                            f"</select>{PROSE}</form></body>",
    "removed_parts": f"<html><head><title>t</title><style>p {{}}</style></head><body><script>var x;</script>"
                     f"<!-- c -->{PROSE}<noscript>{PROSE}</noscript><iframe>frame {PROSE}</iframe>"
                     f"<object>alt {PROSE}</object><textarea>{PROSE}</textarea><?php echo 1 ?>tail</body></html>",
    "fragment": f"<p>{PROSE}</p>",
    "fragment_with_text": f"loose text {PROSE}<p>{PROSE}</p>trailing",
    "xml_declaration": f"<?xml version='1.0' encoding='iso-8859-1'?><html><body><p>café {PROSE}</p></body></html>",
    "table": f"<table><tr><td>{PROSE}</td><td>cell</td></tr><tr><th>head</th></tr></table>",
    "only_script": "<html><body><script>document.write('x')</script></body></html>",
    "whitespace_only": "<html><body>  \n </body></html>",
}


@pytest.mark.parametrize("name", sorted(TRICKY_PAGES))
@pytest.mark.parametrize("stoplist", [ENGLISH, frozenset()], ids=["english", "no_stoplist"])
def test_tricky_markup_gives_jusText_paragraphs(name, stoplist):
    fast, reference, fast_text, reference_text = _paragraphs_both_ways(TRICKY_PAGES[name], stoplist)
    assert fast == reference
    assert fast_text == reference_text


def test_corner_cases_are_exercised():
    """The hand-written pages reach every class, a kept heading and a paragraph of link text."""
    classes = {(final, heading) for name in TRICKY_PAGES
               for _, _, final, heading in _paragraphs_both_ways(TRICKY_PAGES[name], ENGLISH)[0]}
    cf_classes = {cf for name in TRICKY_PAGES for _, cf, _, _ in _paragraphs_both_ways(TRICKY_PAGES[name], ENGLISH)[0]}
    assert cf_classes == {"bad", "short", "neargood", "good"}
    assert ("good", True) in classes and ("bad", True) in classes


def test_stop_word_density_on_the_threshold():
    """8 stop words in 25 is exactly stopwords_high (0.32): good when long, as in jusText."""
    words = ["the", "of", "and", "to", "in", "is", "it", "that"] + [f"Alpha{i:02d}verylongword" for i in range(17)]
    html = f"<body><p>{' '.join(words)}</p><p>{' '.join(words[:7] + words[8:])}</p></body>"
    fast, reference, _, _ = _paragraphs_both_ways(html, ENGLISH)
    assert fast == reference
    assert [cf for _, cf, _, _ in fast] == ["good", "bad"]  # 8/25 >= 0.32; 7/24 < 0.30


@pytest.mark.parametrize("params", [JusTextParams(no_headings=True), JusTextParams(max_heading_distance=0),
                                    JusTextParams(length_low=10, length_high=40, max_link_density=0.5)])
def test_other_parameters(params):
    for name in ("headings", "links", "br_splits"):
        fast, reference, _, _ = _paragraphs_both_ways(TRICKY_PAGES[name], ENGLISH, params)
        assert fast == reference


def test_broken_markup_fails_like_jusText():
    for html in ("", "   "):
        with pytest.raises(Exception) as fast_error:
            fast_justext(html, ENGLISH, JusTextParams())
        with pytest.raises(Exception) as reference_error:
            justext_paragraphs(html, ENGLISH, JusTextParams())
        assert type(fast_error.value) is type(reference_error.value)
