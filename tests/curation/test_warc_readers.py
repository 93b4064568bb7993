"""FastWARC (the default WARC parser) against warcio, its reference twin: the same records, ids and
drop reasons on real pages, on encoded payloads, and on files cut short or corrupted."""

import gzip

import pytest

from warc_fixtures import html_record
from curation.io.pieces import format_piece, plan_pieces
from curation.io.readers import read_warc


def _read(path, reader):
    batches = list(read_warc(str(path), source="test", batch_rows=7, reader=reader))
    kept = [row for batch in batches for row in batch.table.to_pylist()]
    rejected = [(row["id"], row["drop_reason"]) for batch in batches for row in batch.rejected.to_pylist()]
    return kept, rejected


def _same_under_both(path):
    fast, reference = _read(path, "fastwarc"), _read(path, "warcio")
    assert fast == reference
    return fast


def _gzip_members(data: bytes) -> list[int]:
    return [i for i in range(len(data) - 2) if data[i:i + 3] == b"\x1f\x8b\x08"]


@pytest.fixture
def crawl(warc_factory, handbook_pages):
    pages = handbook_pages["fr-FR"][:12]
    body = pages[0].read_bytes()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 4000]), body[i:i + 4000]) for i in range(0, len(body), 4000))
    records = [html_record(p) for p in pages] + [
        {"url": "https://x/gzip", "payload": gzip.compress(body), "content_type": "text/html",
         "headers": [("Content-Encoding", "gzip")]},
        {"url": "https://x/chunked", "payload": chunked + b"0\r\n\r\n", "content_type": "text/html",
         "headers": [("Transfer-Encoding", "chunked")]},
        {"url": "https://debian-handbook.info/fr-FR/déploiement", "payload": body, "content_type": None},
    ]
    return records, body


def test_same_records_ids_and_payloads(warc_factory, crawl):
    records, body = crawl
    path = warc_factory("a.warc.gz", records)
    kept, rejected = _same_under_both(path)
    assert rejected == [] and len(kept) == len(records)
    assert [row["url"] for row in kept] == [r["url"] for r in records]
    assert [row["payload"] for row in kept[-3:]] == [body] * 3  # codings undone, as warcio's content_stream
    assert kept[0]["payload"] == records[0]["payload"] and kept[0]["content_type"] == "text/html; charset=utf-8"
    assert len({row["id"] for row in kept}) == len(records)


def test_uncompressed_warc(warc_factory, crawl):
    kept, rejected = _same_under_both(warc_factory("a.warc", crawl[0], gzip=False))
    assert len(kept) == len(crawl[0]) and rejected == []


@pytest.mark.parametrize("fraction", [0.3, 0.55, 0.8, 0.97])
def test_file_cut_short(warc_factory, crawl, tmp_path, fraction):
    data = warc_factory("a.warc.gz", crawl[0]).read_bytes()
    cut = tmp_path / "cut.warc.gz"
    cut.write_bytes(data[:int(len(data) * fraction)])
    kept, rejected = _same_under_both(cut)
    assert [reason for _, reason in rejected] == ["truncated_warc_record"]
    assert len(kept) < len(crawl[0])


@pytest.mark.parametrize("member", [0, 4, 14])
def test_corrupt_member_is_counted_and_reading_resumes(warc_factory, crawl, tmp_path, member):
    data = bytearray(warc_factory("a.warc.gz", crawl[0]).read_bytes())
    starts = _gzip_members(bytes(data)) + [len(data)]
    middle = (starts[member] + starts[member + 1]) // 2
    data[middle:middle + 64] = bytes(64)
    broken = tmp_path / "broken.warc.gz"
    broken.write_bytes(bytes(data))
    kept, rejected = _same_under_both(broken)
    assert [reason for _, reason in rejected] == ["broken_warc_record"]
    assert [row["url"] for row in kept] == [r["url"] for i, r in enumerate(crawl[0]) if i != member]


def test_pieces_read_by_fastwarc_equal_the_whole_file_read_by_warcio(warc_factory, crawl):
    path = warc_factory("a.warc.gz", crawl[0] * 3)
    pieces = plan_pieces(str(path), path.stat().st_size // 4)
    assert len(pieces) >= 4
    kept, rejected = [], []
    for piece in pieces:
        piece_kept, piece_rejected = _read(format_piece(piece), "fastwarc")
        kept += piece_kept
        rejected += piece_rejected
    assert (kept, rejected) == _read(path, "warcio")
