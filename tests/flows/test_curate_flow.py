import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from distributed import LocalCluster

from flows.cli import main
from flows.config.curate import CURATION_STAGES, load_curate_config
from flows.curate import curate


def _curated(workdir: Path):
    return pq.read_table(sorted((workdir / "curated").glob("part-*.parquet"))).sort_by("id")


def test_curate_flow_accounts_for_every_document(small_crawl, tmp_path, prefect_api):
    workdir = tmp_path / "work"
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        config = load_curate_config(None, inputs=[{"path": str(small_crawl)}], workdir=str(workdir),
                                    dask={"scheduler": cluster.scheduler_address}, substring_dedup={"min_bytes": 200})
        stats = curate(config)
        # no classifiers named, no rephrase backend
        assert [s.name for s in stats] == [s for s in CURATION_STAGES if s not in ("classify", "rephrase")]
        # the crawl repeats pages under other URLs and the handbook's navigation on every page
        assert stats[4].name == "substring-dedup" and stats[4].counters["spans_removed"] > 0
        summary = json.loads((workdir / "stats.json").read_text())["stages"]
        for stage in summary:
            assert stage["docs_in"] == stage["docs_out"] + sum(stage["dropped"].values()), stage["name"]
        for before, after in zip(summary, summary[1:]):
            assert after["docs_in"] == before["docs_out"]
        extract = summary[0]
        assert extract["dropped"]["non_html"] >= 1
        assert extract["dropped"]["truncated_warc_record"] == 1
        assert extract["dropped"]["bad_json"] == 1
        assert any("wrong.parquet: no 'text' column" in e for e in extract["errors"])
        assert summary[2]["dropped"]["exact_duplicate"] >= 6
        assert {"en", "fr", "de", "ja", "es", "ru"} <= set(summary[1]["languages"])
        curated = _curated(workdir)
        assert curated.num_rows == summary[-1]["docs_out"] > 0
        assert set(curated.column_names) >= {"id", "text", "url", "source", "crawl_date", "language", "language_score"}
        assert curated["source"].unique().to_pylist() == ["crawl"]
        quarantined = pq.read_table(workdir / "extract" / "rejected")
        assert "truncated_warc_record" in quarantined["drop_reason"].to_pylist()
        assert "## Funnel" in (workdir / "report.md").read_text()

        # A rerun with the same inputs and config does no work and changes nothing.
        mtimes = {p: p.stat().st_mtime_ns for p in workdir.rglob("part-*.parquet")}
        rerun = curate(config)
        assert [s.to_dict() for s in rerun] == [s.to_dict() for s in stats]
        assert {p: p.stat().st_mtime_ns for p in workdir.rglob("part-*.parquet")} == mtimes

        # Changing one stage's config reruns that stage and the ones after it only.
        changed = config.model_copy(update={"langid": type(config.langid)(keep_languages=("en",))})
        extract_mtime = (workdir / "extract" / "part-00000.parquet").stat().st_mtime_ns
        narrowed = curate(changed)
        assert (workdir / "extract" / "part-00000.parquet").stat().st_mtime_ns == extract_mtime
        assert set(narrowed[1].languages) == {"en"}


def test_strict_mode_stops_at_the_bad_file(small_crawl, tmp_path, prefect_api):
    from flows.errors import StageFailed

    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        config = load_curate_config(None, inputs=[{"path": str(small_crawl)}], workdir=str(tmp_path / "w"),
                                    strict=True, stages=["extract"], dask={"scheduler": cluster.scheduler_address})
        with pytest.raises(StageFailed, match=r"stage extract failed on .*wrong\.parquet: .*no 'text' column"):
            curate(config)


def test_stage_command_runs_one_stage_alone(small_crawl, tmp_path, capsys):
    out = tmp_path / "langid-only"
    jsonl = str(small_crawl / "extra.jsonl.gz")
    assert main(["stage", "langid", "--input", jsonl, "--output", str(out), "--workers", "1"]) == 0
    table = pq.read_table(out / "part-00000.parquet")
    assert table["language"].to_pylist() == ["en", "en", "en"]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["docs_in"] == 4 and stats["dropped"] == {"bad_json": 1}
    assert (out / "_SUCCESS").exists()
    assert "| langid | 4 | 3 |" in capsys.readouterr().out


def test_cli_errors_are_one_line_and_nonzero(tmp_path, capsys):
    assert main(["curate", "--input", str(tmp_path / "missing.warc.gz"), "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing.warc.gz: no such file or directory" in err
    config = tmp_path / "bad.yaml"
    config.write_text("langid:\n  min_scor: 0.5\n")
    assert main(["curate", str(config), "--input", str(tmp_path)]) == 2
    assert "bad.yaml: langid.min_scor: Unexpected keyword argument" in capsys.readouterr().err
    assert main(["stage", "nope", "--input", "x", "--output", "y"]) == 2
    assert "unknown stage 'nope'" in capsys.readouterr().err
