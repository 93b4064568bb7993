"""A crawl that grows between curate runs: the new files are curated, the finished ones reused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from distributed import LocalCluster
from prefect.artifacts import Artifact

from flows.config.curate import load_curate_config
from flows.curate import RUNS_LOG, curate
from warc_fixtures import html_record, write_warc


@pytest.fixture
def growing_crawl(tmp_path: Path, handbook_pages) -> tuple[Path, Path]:
    """Three WARC files of real pages; the third (written aside) repeats pages of the first."""
    pages = [p for lang in ("en-US", "fr-FR", "de-DE") for p in handbook_pages[lang][10:22]]
    crawl, later = tmp_path / "crawl", tmp_path / "later"
    crawl.mkdir()
    later.mkdir()
    for k in range(3):
        records = [html_record(p) for p in pages[k::3]]
        if k == 2:  # copies of pages the first file already holds, under other URLs
            records += [html_record(p, url=f"https://mirror.example.org/{i}.html") for i, p in enumerate(pages[0:9:3])]
        write_warc((crawl if k < 2 else later) / f"part-{k}.warc.gz", records)
    return crawl, later / "part-2.warc.gz"


def _curated(workdir: Path):
    return pq.read_table(sorted((workdir / "curated").glob("part-*.parquet"))).sort_by("id")


def _runs(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / RUNS_LOG).read_text().splitlines()]


def test_new_crawl_files_are_curated_and_finished_shards_reused(growing_crawl, tmp_path, prefect_api):
    crawl, new_file = growing_crawl
    stages = ["extract", "langid", "exact-dedup", "fuzzy-dedup", "heuristics"]
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        def config(workdir: Path):
            return load_curate_config(None, inputs=[{"path": str(crawl), "source": "crawl"}], workdir=str(workdir),
                                      stages=stages, dask={"scheduler": cluster.scheduler_address})

        workdir = tmp_path / "work"
        curate(config(workdir))
        first_shards = {p: p.stat().st_mtime_ns for p in workdir.glob("*/part-*.parquet")}
        curate(config(workdir))  # nothing new: no shard written
        shutil.copy2(new_file, crawl / new_file.name)
        grown = curate(config(workdir))

        runs = _runs(workdir)
        assert [s["shards_written"] for s in runs[0]["stages"]] == [2] * len(stages)
        assert [s["shards_written"] for s in runs[1]["stages"]] == [0] * len(stages)
        assert [s["shards_written"] for s in runs[2]["stages"]] == [1] * len(stages)
        assert {p: p.stat().st_mtime_ns for p in first_shards} == first_shards  # untouched, not rewritten

        # The same as curating the grown crawl from nothing, copies of old pages dropped from the new shard.
        scratch = tmp_path / "scratch"
        from_scratch = curate(config(scratch))
        assert _curated(workdir).equals(_curated(scratch))
        assert [s.to_dict() | {"seconds": 0} for s in grown] == [s.to_dict() | {"seconds": 0} for s in from_scratch]
        assert grown[2].dropped["exact_duplicate"] == 3

        # A crawl file removed again: its shards go, the rest stays.
        (crawl / new_file.name).unlink()
        shrunk = curate(config(workdir))
        assert shrunk[-1].docs_out < grown[-1].docs_out
        assert not list(workdir.glob("*/part-00002*"))
        assert [s["shards_written"] for s in _runs(workdir)[3]["stages"]] == [0] * len(stages)

    funnel = Artifact.get("curation-funnel")  # the newest run's funnel, as a Prefect markdown artifact
    assert funnel.type == "markdown" and f"# Curation funnel of {workdir}" in funnel.data
    assert all(f"| {stage} |" in funnel.data for stage in stages)
