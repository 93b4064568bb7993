"""The sample crawl (issue 2): Common Crawl-like WARC files built from this machine's documents."""

from __future__ import annotations

import base64
import hashlib
import itertools
import logging
import re
from collections import Counter
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from flows.demo.sample_crawl import SampleCorpusReport, build_sample_corpus, ensure_doc_packages
from flows.demo.sample_crawl import packages
from flows.demo.sample_crawl.plan import plan_pages
from flows.demo.sample_crawl.troff import parse_man

SMALL_CORPUS_RECORDS = 300
FILE_NAME = re.compile(r"CC-SAMPLE-20261101000000-\d{5}\.warc\.gz")
WARC_DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
RECORD_ID = re.compile(r"<urn:uuid:[0-9a-f-]{36}>")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[SampleCorpusReport, list[dict]]:
    report = build_sample_corpus(tmp_path_factory.mktemp("sample"), max_records=SMALL_CORPUS_RECORDS,
                                 num_files=3, install_missing=False)
    return report, [record for path in report.files for record in _read_records(path)]


def _read_records(path: Path) -> list[dict]:
    records = []
    with open(path, "rb") as handle:
        for record in ArchiveIterator(handle):
            records.append({"file": path.name, "type": record.rec_type, "warc": dict(record.rec_headers.headers),
                            "http": dict(record.http_headers.headers) if record.http_headers else {},
                            "status": record.http_headers.get_statuscode() if record.http_headers else None,
                            "payload": record.content_stream().read()})
    return records


def _responses(records: list[dict]) -> list[dict]:
    return [r for r in records if r["type"] == "response"]


def _shingles(payload: bytes) -> set[tuple[str, ...]]:
    words = re.sub(rb"<[^>]+>", b" ", payload).decode("utf-8").lower().split()
    return {tuple(words[i:i + 5]) for i in range(len(words) - 4)}


def test_files_are_gzipped_warcs_laid_out_like_common_crawl(corpus):
    report, records = corpus
    assert [p.name for p in report.files] == [f"CC-SAMPLE-20261101000000-{i:05d}.warc.gz" for i in range(3)]
    for path in report.files:
        assert FILE_NAME.fullmatch(path.name) and path.read_bytes()[:2] == b"\x1f\x8b"
        types = [r["type"] for r in records if r["file"] == path.name]
        assert types[0] == "warcinfo"
        assert types[1:] == ["request", "response", "metadata"] * ((len(types) - 1) // 3)


def test_responses_carry_common_crawl_headers_and_html(corpus):
    _, records = corpus
    responses = _responses(records)
    for response in responses:
        warc, http, payload = response["warc"], response["http"], response["payload"]
        assert warc["WARC-Target-URI"].startswith("https://")
        assert WARC_DATE.fullmatch(warc["WARC-Date"]) and RECORD_ID.fullmatch(warc["WARC-Record-ID"])
        sha1 = base64.b32encode(hashlib.sha1(payload).digest()).decode()
        assert warc["WARC-Payload-Digest"] == f"sha1:{sha1}"
        assert response["status"] == "200" and http["Server"] and http["Date"].endswith("GMT")
        assert int(http["Content-Length"]) == len(payload)
        assert warc["WARC-Identified-Payload-Type"] == http["Content-Type"].split(";")[0]
    html = [r for r in responses if r["http"]["Content-Type"].startswith("text/html; charset=UTF-8")]
    assert len(html) > 0.9 * len(responses)
    assert all(b"<html" in r["payload"] and b"</html>" in r["payload"] for r in html)


def test_same_seed_builds_byte_identical_files(corpus, tmp_path):
    report, _ = corpus
    again = build_sample_corpus(tmp_path, max_records=SMALL_CORPUS_RECORDS, num_files=3, install_missing=False)
    assert [p.read_bytes() for p in again.files] == [p.read_bytes() for p in report.files]


def test_report_counts_match_the_files(corpus):
    report, records = corpus
    responses = _responses(records)
    assert report.responses == len(responses) == SMALL_CORPUS_RECORDS
    assert report.warc_records == len(records)
    assert report.total_bytes == sum(p.stat().st_size for p in report.files)
    for counts in (report.responses_by_source, report.responses_by_variant, report.responses_by_language):
        assert sum(counts.values()) == len(responses)
    content_types = Counter(r["http"]["Content-Type"].split(";")[0] for r in responses)
    assert content_types == report.responses_by_content_type


def test_corpus_spans_many_languages(corpus):
    report, records = corpus
    languages = {lang for lang in report.responses_by_language if lang != "und"}
    assert len(languages) >= 8
    html_langs = {m.group(1).split(b"-")[0] for r in _responses(records)
                  for m in [re.search(rb'<html[^>]*\blang="([^"]+)"', r["payload"])] if m}
    assert len(html_langs) >= 8


def test_licence_pages_include_a_near_duplicate_pair(corpus):
    _, records = corpus
    licences = [_shingles(r["payload"]) for r in _responses(records)
                if r["warc"]["WARC-Target-URI"].startswith("https://sources.debian.org/")]
    similarities = [len(a & b) / len(a | b) for a, b in itertools.combinations(licences, 2) if a and b]
    assert any(0.5 <= s < 1.0 for s in similarities)


def test_exact_duplicates_are_served_at_different_urls(corpus):
    _, records = corpus
    urls_by_digest: dict[str, set[str]] = {}
    for response in _responses(records):
        urls_by_digest.setdefault(response["warc"]["WARC-Payload-Digest"], set()).add(response["warc"]["WARC-Target-URI"])
    assert any(len(urls) >= 2 for urls in urls_by_digest.values())


def test_non_html_responses_are_real_files(corpus):
    _, records = corpus
    by_type = {}
    for response in _responses(records):
        by_type.setdefault(response["http"]["Content-Type"].split(";")[0], []).append(response["payload"])
    assert all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in by_type["image/png"])
    assert all(p.startswith(b"\x1f\x8b") for p in by_type["application/gzip"])
    assert by_type["text/plain"]


def test_legacy_and_meta_only_charsets(corpus):
    _, records = corpus
    responses = _responses(records)
    legacy = [r for r in responses if re.search(r"charset=(ISO-8859-1|Shift_JIS|EUC-JP)", r["http"]["Content-Type"])]
    assert legacy
    for response in legacy:
        response["payload"].decode(response["http"]["Content-Type"].split("charset=")[1])
    assert any(not _is_utf8(r["payload"]) for r in legacy)
    meta_only = [r for r in responses if r["http"]["Content-Type"] == "text/html"]
    assert meta_only and all(b'<meta charset="utf-8">' in r["payload"] for r in meta_only)


def _is_utf8(payload: bytes) -> bool:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_troff_reader_keeps_sections_words_and_special_characters():
    source = "\n".join([
        '.\\" a comment', ".TH LS 1 2023", ".SH NAME", "ls \\- list directory contents",
        ".SH \"DESCRIPTION\"", ".B ls", "lists files \\(em see", ".BR dir (1)", ".PP", "Vorl\\(:aufig \\fBfett\\fR.",
    ])
    page = parse_man(source)
    assert page.title == "LS(1)"
    assert page.blocks == [("h2", "NAME"), ("p", "ls - list directory contents"), ("h2", "DESCRIPTION"),
                           ("p", "ls lists files \u2014 see dir(1)"), ("p", "Vorl\u00e4ufig fett.")]


def test_too_few_records_is_a_clear_error():
    with pytest.raises(ValueError, match="max_records"):
        plan_pages(max_records=10, seed=0)


def test_missing_packages_without_root_fall_back_to_what_is_installed(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(packages, "DOC_PACKAGES", {"debian-handbook": tmp_path / "absent"})
    monkeypatch.setattr(packages.os, "geteuid", lambda: 1000)
    with caplog.at_level(logging.INFO, logger=packages.__name__):
        assert ensure_doc_packages() == []
    assert len(caplog.records) == 1 and "debian-handbook" in caplog.records[0].getMessage()
