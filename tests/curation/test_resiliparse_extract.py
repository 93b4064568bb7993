import json

import pyarrow.parquet as pq

from warc_fixtures import html_record
from curation.extract import ExtractConfig, Extractor
from curation.extract_resiliparse import resiliparse_text
from curation.shards import ShardTask, run_shard

NAV_ONLY = (b"<html><head><title>Index</title></head><body><nav><ul><li><a href='/'>Home</a></li>"
            b"<li><a href='/docs'>Documentation</a></li><li><a href='/about'>About</a></li></ul></nav></body></html>")


def test_real_pages_keep_their_prose_without_markup(handbook_pages):
    page = next(p for p in handbook_pages["en-US"] if p.name == "sect.apt-get.html")
    text, reason = resiliparse_text(page.read_text())
    assert reason is None
    assert "apt install" in text and "APT is a vast project" in text
    assert "<p" not in text and "</" not in text


def test_empty_pages_and_navigation_only_pages_have_their_own_reasons():
    assert resiliparse_text("<html><body><script>var a = 1;</script></body></html>") == (None, "empty_text")
    assert resiliparse_text(NAV_ONLY.decode()) == (None, "empty_main_content")


def test_shard_of_real_pages_accounts_for_every_record(warc_factory, handbook_pages, tmp_path):
    pages = handbook_pages["de-DE"][:30]
    records = [html_record(p) for p in pages] + [
        {"url": "https://x/nav", "payload": NAV_ONLY, "content_type": "text/html"},
        {"url": "https://x/logo.png", "payload": b"\x89PNG\r\n\x1a\n" + bytes(64), "content_type": "image/png"},
        {"url": "https://x/blank", "payload": b"<html><body>  </body></html>", "content_type": "text/html"},
    ]
    warc = warc_factory("crawl.warc.gz", records)
    task = ShardTask(stage_key="k", input_path=str(warc), source="handbook", output_dir=str(tmp_path / "out"),
                     index=0, keep_rejects=True)
    stats = run_shard(Extractor(ExtractConfig(algorithm="resiliparse")), task)
    assert stats.docs_in == len(records)
    assert stats.docs_out + sum(stats.dropped.values()) == len(records)
    assert stats.dropped == {"empty_main_content": 1, "non_html": 1, "empty_text": 1}
    kept = pq.read_table(task.output_path)
    assert kept.num_rows == len(pages) and all(kept["text"].to_pylist())
    assert "Debian" in " ".join(kept["text"].to_pylist())
    rejected = pq.read_table(task.rejected_path)
    assert sorted(rejected["drop_reason"].to_pylist()) == ["empty_main_content", "empty_text", "non_html"]
    assert json.loads(task.stats_path.read_text())["stats"]["docs_out"] == len(pages)
