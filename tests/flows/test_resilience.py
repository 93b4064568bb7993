"""Killing `ccforge curate` with SIGKILL and running it again finishes with the outputs of an
uninterrupted run without redoing finished work; a failing stage names itself and its input.

Every run is the real command line in a session of its own; a kill reaches its Dask worker
processes too. Prefect's API is the test session's server (as with `PREFECT_API_URL` in production).
"""

import re
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ccforge_processes import (
    assert_same_curated, curate_args, file_versions, kill_when, run_ccforge, start_ccforge,
)

SHARDS = 8  # files of the `sample_crawl` fixture


@pytest.mark.slow
def test_sigkill_inside_a_per_shard_stage_then_rerun(sample_crawl, curated_reference, tmp_path):
    workdir = tmp_path / "work"
    extract = workdir / "extract"
    kill_when(curate_args(sample_crawl, workdir), lambda: any(extract.glob("part-*.stats.json")),
              "the first extract shard was done", cwd=tmp_path)
    assert not (extract / "_SUCCESS").exists(), "the kill came after extract had finished"
    # A shard is done once its .stats.json is written (after its Parquet file is renamed into place).
    done = [p.name.removesuffix(".stats.json") for p in extract.glob("part-*.stats.json")]
    assert 0 < len(done) < SHARDS, f"kill after {len(done)} of {SHARDS} extract shards: not inside the stage"
    finished = {name: version for name, version in file_versions(extract).items()
                if name.split("/")[-1].split(".")[0] in done}

    rerun = run_ccforge(curate_args(sample_crawl, workdir), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert_same_curated(workdir, curated_reference)
    # The shards finished before the kill were reused, not written again; the others were written.
    after = file_versions(extract)
    assert {name: after.get(name) for name in finished} == finished
    assert len(list(extract.glob("part-*.stats.json"))) == SHARDS
    assert not list(workdir.rglob(".tmp-*")), "partial writes of the killed run were left behind"


@pytest.mark.slow
def test_sigkill_inside_a_global_stage_then_rerun(sample_crawl, curated_reference, tmp_path):
    workdir = tmp_path / "work"
    hashes = workdir / "exact-dedup" / "_hashes"
    kill_when(curate_args(sample_crawl, workdir),
              lambda: (workdir / "langid" / "_SUCCESS").exists() and any(hashes.glob("part-*.arrow")),
              "exact dedup had hashed a shard", cwd=tmp_path)
    assert not (workdir / "exact-dedup" / "_SUCCESS").exists(), "the kill came after exact-dedup had finished"
    finished_stages = {name: file_versions(workdir / name) for name in ("extract", "langid")}
    hashed = file_versions(hashes, "part-*.arrow")

    rerun = run_ccforge(curate_args(sample_crawl, workdir), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert_same_curated(workdir, curated_reference)
    for name, versions in finished_stages.items():
        assert f"{name}: finished earlier, skipped" in rerun.stdout
        assert file_versions(workdir / name) == versions, f"{name} was written again"
    # Inside the interrupted stage, the shards hashed before the kill are not hashed again.
    assert {name: version for name, version in file_versions(hashes).items() if name in hashed} == hashed


def _parquet_shards(directory, handbook_pages):
    """Three Parquet shards with `id` and `text` (real pages, a few near-copies), then a fourth
    that is not Parquet at all (a shard damaged on disk between two stages)."""
    directory.mkdir()
    texts = [p.read_text() for p in handbook_pages["en-US"][20:32]]
    texts += [t[:-200] for t in texts[:4]]
    for shard in range(3):
        rows = range(shard, len(texts), 3)
        pq.write_table(pa.table({"id": [f"d{i}" for i in rows], "text": [texts[i] for i in rows]}),
                       directory / f"part-{shard}.parquet")
    bad = directory / "part-3.parquet"
    bad.write_bytes(b"PAR1 damaged on disk, not a Parquet file")
    return bad


def _warcs_and_a_bad_file(directory, sample_crawl):
    directory.mkdir()
    for warc in sorted(sample_crawl.glob("*.warc.gz"))[:2]:
        shutil.copy(warc, directory / warc.name)
    bad = directory / "upload.parquet"
    bad.write_bytes(b"truncated upload")
    return bad


#: A per-shard stage, and the global stages whose first pass reads every input on the cluster.
FAILING_STAGES = ("extract", "exact-dedup", "fuzzy-dedup")


@pytest.fixture(scope="module")
def failed_runs(sample_crawl, handbook_pages, prefect_api, tmp_path_factory) -> dict:
    """For each stage, `curate --strict --stages STAGE` over inputs one of which is unreadable (run side by
    side: each is mostly start-up). Stage -> (finished run, the unreadable input, workdir)."""
    runs = {}
    for stage in FAILING_STAGES:
        root = tmp_path_factory.mktemp("failing")
        inputs = root / "inputs"
        bad = _warcs_and_a_bad_file(inputs, sample_crawl) if stage == "extract" else _parquet_shards(inputs, handbook_pages)
        args = ["curate", "--input", str(inputs), "--workdir", str(root / "work"), "--stages", stage, "--workers", "1",
                "--strict"]
        runs[stage] = (start_ccforge(args, cwd=root), bad, root / "work")
    return {stage: (run.finish(), bad, workdir) for stage, (run, bad, workdir) in runs.items()}


@pytest.mark.slow
@pytest.mark.parametrize("stage", FAILING_STAGES)
def test_a_failing_stage_names_the_stage_and_the_input(stage, failed_runs):
    result, bad, workdir = failed_runs[stage]
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("ccforge curate:")]
    assert len(errors) == 1, result.stderr[-3000:]
    reason = errors[0].replace(str(bad), "<input>")
    assert "<input>" in reason and re.search(rf"\b{stage}\b", reason), errors[0]
    assert not (workdir / stage / "_SUCCESS").exists()
