import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from warc_fixtures import html_record
from curation.io.readers import InputFileError, expand_inputs, read_batches


def _read_all(path, batch_rows=1000):
    batches = list(read_batches(str(path), source="test", batch_rows=batch_rows))
    kept = pa.concat_tables([b.table for b in batches]) if batches else None
    rejected = [r for b in batches for r in b.rejected.to_pylist()]
    return kept, rejected


def test_warc_reads_response_records_in_batches(warc_factory, handbook_pages):
    pages = handbook_pages["en-US"][:25]
    path = warc_factory("a.warc.gz", [html_record(p) for p in pages])
    kept, rejected = _read_all(path, batch_rows=10)
    assert kept.num_rows == 25 and rejected == []
    assert kept["payload"][3].as_py() == pages[3].read_bytes()
    assert kept["url"][0].as_py().endswith(pages[0].name)
    assert kept["crawl_date"][0].as_py() == "2026-11-01T00:00:00Z"
    assert len(set(kept["id"].to_pylist())) == 25  # ids hash file + offset: unique


def test_uncompressed_warc(warc_factory, handbook_pages):
    path = warc_factory("a.warc", [html_record(p) for p in handbook_pages["fr-FR"][:5]], gzip=False)
    kept, rejected = _read_all(path)
    assert kept.num_rows == 5 and rejected == []


def test_truncated_gzip_keeps_complete_records_and_counts_the_cut_one(warc_factory, handbook_pages, tmp_path):
    path = warc_factory("a.warc.gz", [html_record(p) for p in handbook_pages["en-US"][:10]])
    data = path.read_bytes()
    cut = tmp_path / "cut.warc.gz"
    cut.write_bytes(data[: int(len(data) * 0.75)])
    kept, rejected = _read_all(cut)
    assert 5 <= kept.num_rows < 10
    assert [r["drop_reason"] for r in rejected] == ["truncated_warc_record"]


def test_broken_record_is_counted_and_reading_resumes(warc_factory, handbook_pages, tmp_path):
    records = [html_record(p) for p in handbook_pages["en-US"][:6]]
    path = warc_factory("a.warc.gz", records)
    whole = bytearray(path.read_bytes())
    # Corrupt the deflate data in the middle of the third gzip member.
    starts = [i for i in range(len(whole) - 2) if whole[i:i + 3] == b"\x1f\x8b\x08"]
    middle = (starts[2] + starts[3]) // 2
    whole[middle:middle + 64] = bytes(64)
    broken = tmp_path / "broken.warc.gz"
    broken.write_bytes(bytes(whole))
    kept, rejected = _read_all(broken)
    assert kept.num_rows == 5  # every record but the broken one
    assert [r["drop_reason"] for r in rejected] == ["broken_warc_record"]
    assert kept["url"].to_pylist() == [r["url"] for i, r in enumerate(records) if i != 2]


def test_jsonl_plain_gzip_zstd_and_bad_lines(tmp_path):
    lines = [json.dumps({"text": "alpha document", "url": "u1"}), "{not json", json.dumps({"id": "x", "no_text": 1}),
             "", json.dumps({"id": "keep-me", "text": "beta"}), json.dumps(["a", "list"])]
    payload = ("\n".join(lines) + "\n").encode()
    paths = [tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz", tmp_path / "c.jsonl.zst"]
    paths[0].write_bytes(payload)
    paths[1].write_bytes(gzip.compress(payload))
    paths[2].write_bytes(zstandard.ZstdCompressor().compress(payload))
    for path in paths:
        kept, rejected = _read_all(path)
        assert kept["text"].to_pylist() == ["alpha document", "beta"]
        assert kept["id"][1].as_py() == "keep-me"
        assert sorted(r["drop_reason"] for r in rejected) == ["bad_json", "bad_json", "missing_text"]


def test_parquet_without_text_is_a_file_error_naming_the_file(tmp_path):
    path = tmp_path / "no_text.parquet"
    pq.write_table(pa.table({"id": ["a"], "body": ["x"]}), path)
    with pytest.raises(InputFileError, match=r"no_text\.parquet: no 'text' column \(columns: id, body\)"):
        _read_all(path)


def test_parquet_carries_columns_and_makes_ids(tmp_path):
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": ["one", "two", "three"], "lang_hint": ["en", "fr", "de"]}), path)
    kept, _ = _read_all(path, batch_rows=2)
    assert kept["lang_hint"].to_pylist() == ["en", "fr", "de"]
    assert kept["source"].to_pylist() == ["test"] * 3
    assert len(set(kept["id"].to_pylist())) == 3


def test_missing_path_and_unknown_format_are_one_line_errors(tmp_path):
    with pytest.raises(InputFileError, match="does-not-exist.warc.gz: no such file or directory"):
        expand_inputs([str(tmp_path / "does-not-exist.warc.gz")])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputFileError, match="notes.txt: unknown input format"):
        _read_all(tmp_path / "notes.txt")


def test_expand_inputs_sorts_directories_and_globs(tmp_path):
    for name in ("b.jsonl", "a.jsonl", "c.parquet", "skip.txt"):
        (tmp_path / name).write_text("")
    assert [p.rsplit("/", 1)[1] for p in expand_inputs([str(tmp_path)])] == ["a.jsonl", "b.jsonl", "c.parquet"]
    assert [p.rsplit("/", 1)[1] for p in expand_inputs([str(tmp_path / "*.jsonl")])] == ["a.jsonl", "b.jsonl"]


def test_fsspec_urls_are_expanded_and_read(tmp_path, warc_factory, handbook_pages):
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/crawl/b.jsonl", b'{"text": "second"}\n')
    fs.pipe("/crawl/a.jsonl", b'{"text": "first"}\n')
    urls = expand_inputs(["memory://crawl/*.jsonl"])
    assert urls == ["memory:///crawl/a.jsonl", "memory:///crawl/b.jsonl"]
    assert [_read_all(u)[0]["text"].to_pylist() for u in urls] == [["first"], ["second"]]
    warc = warc_factory("c.warc.gz", [html_record(p) for p in handbook_pages["it-IT"][:3]])
    [url] = expand_inputs([f"file://{warc}"])
    assert url.startswith("file://") and _read_all(url)[0].num_rows == 3
