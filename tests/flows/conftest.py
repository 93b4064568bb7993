import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ccforge_processes import curate_args, run_ccforge
from warc_fixtures import html_record, write_warc


@pytest.fixture(autouse=True)
def session_prefect_server(prefect_api) -> None:
    """The tests here run flows, in this process or in `ccforge` subprocesses: all on the session's server."""


@pytest.fixture
def small_crawl(tmp_path: Path, handbook_pages) -> Path:
    """Three WARC files of real pages in six languages with exact duplicates, plus bad files."""
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    pages = [p for lang in ("en-US", "fr-FR", "de-DE", "ja-JP", "es-ES", "ru-RU") for p in handbook_pages[lang][20:32]]
    records = [html_record(p) for p in pages]
    records += [html_record(p, url=f"https://mirror.example.org/{i}.html") for i, p in enumerate(pages[:6])]
    records.append({"url": "https://x/logo.png", "payload": b"\x89PNG\r\n\x1a\n" + bytes(64), "content_type": "image/png"})
    for k in range(3):
        write_warc(crawl / f"part-{k}.warc.gz", records[k::3])
    bad = crawl / "part-3.warc.gz"  # a truncated file: its complete records still count
    whole = (crawl / "part-2.warc.gz").read_bytes()
    bad.write_bytes(whole[: len(whole) // 2])
    lines = [json.dumps({"id": f"j{i}", "text": p.read_text()[:4000]}) for i, p in enumerate(pages[:3])] + ["{broken"]
    (crawl / "extra.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    pq.write_table(pa.table({"id": ["p"], "body": ["no text column"]}), crawl / "wrong.parquet")
    return crawl


@pytest.fixture(scope="session")
def sample_crawl(tmp_path_factory) -> Path:
    """The sample crawl of `ccforge sample-corpus`: 400 pages in 8 WARC files, so that every curate
    stage on one worker takes a few seconds (time to kill a run inside one)."""
    from flows.demo.sample_crawl import build_sample_corpus

    crawl = tmp_path_factory.mktemp("sample") / "crawl"
    build_sample_corpus(crawl, max_records=400, num_files=8, seed=0, install_missing=False)
    return crawl


@pytest.fixture(scope="session")
def curated_reference(sample_crawl, prefect_api, tmp_path_factory) -> Path:
    """The workdir of one uninterrupted `ccforge curate` of `sample_crawl` (every stage that needs no
    trained model, a one-worker LocalCluster): what interrupted and scaled-out runs must reproduce."""
    workdir = tmp_path_factory.mktemp("reference") / "work"
    result = run_ccforge(curate_args(sample_crawl, workdir), cwd=workdir.parent)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return workdir
