"""The stage-directory runner on real Parquet shards: a finished stage is skipped, a new stage key
clears what the directory held but the shards it can reuse, writes a killed run left are removed,
and a stage's intermediate files survive while only its finishing changes (rephrase's two keys)."""

from __future__ import annotations

import functools
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from token_fixtures import write_curated

from curation.io.writers import TMP_PREFIX
from curation.stage import StageResult, StageStats, split_by_reason
from flows.engine.cluster import dask_client, run_cluster_stage, run_partition_stage
from flows.engine.stage_dir import (
    StageRun, fingerprint_files, read_stage_stats, run_resumable, stage_finished, stage_key,
)
from flows.errors import StageFailed


class ShortDocs:
    """Drops documents shorter than `min_chars` (a real per-partition stage, small enough to read)."""

    name = "short-docs"

    def __init__(self, min_chars: int) -> None:
        self.min_chars = min_chars

    def run(self, table: pa.Table) -> StageResult:
        short = pc.less(pc.utf8_length(table["text"]), self.min_chars).to_pylist()
        return split_by_reason(table, ["too_short" if s else None for s in short])


@pytest.fixture(scope="module")
def client():
    with dask_client(workers=2, processes=False) as client:
        yield client


@pytest.fixture
def shards(tmp_path: Path) -> list[str]:
    return [str(p) for p in write_curated(tmp_path / "in", handbook_pages=8, postgres_pages=8, files=3)]


def _run(inputs: list[str], output_dir: Path, min_chars: int, *, incremental: bool = True) -> StageRun:
    material = {"min_chars": min_chars}
    return StageRun(name=ShortDocs.name, inputs=[(p, "docs") for p in inputs], output_dir=output_dir,
                    stage_key=stage_key(ShortDocs.name, material, fingerprint_files(inputs)),
                    config_key=stage_key(ShortDocs.name, material, "") if incremental else "")


def _versions(output_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in output_dir.glob("part-*")}


def test_finished_stage_is_skipped_and_new_inputs_reuse_the_finished_shards(client, shards, tmp_path):
    out, messages = tmp_path / "out", []
    first = _run(shards[:2], out, 800)
    stats = run_partition_stage(client, first, functools.partial(ShortDocs, 800), messages.append)
    rows = pq.read_table(sorted(map(str, out.glob("part-*.parquet"))))
    assert stats.docs_out == rows.num_rows > 0 and stats.dropped["too_short"] > 0
    assert stats.docs_in == sum(pq.read_metadata(p).num_rows for p in shards[:2])
    assert stage_finished(out, first.stage_key) and read_stage_stats(out)["docs_out"] == stats.docs_out
    written = _versions(out)

    messages.clear()
    again = run_partition_stage(client, first, functools.partial(ShortDocs, 800), messages.append)
    assert messages == ["short-docs: finished earlier, skipped"]
    assert again == stats and _versions(out) == written

    # A grown input set is a new stage key: a global pass's leftovers and a killed write go, the
    # two finished shards stay as they were, and only the new input is computed.
    (out / "_pass").mkdir()
    (out / "_pass" / "summary.json").write_text("{}")
    (out / f"{TMP_PREFIX}0123abcd-part-00002.parquet").write_bytes(b"PAR1 half written")
    grown = _run(shards, out, 800)
    messages.clear()
    total = run_partition_stage(client, grown, functools.partial(ShortDocs, 800), messages.append)
    assert "short-docs: 2 of 3 shards finished earlier, reused" in messages
    assert not (out / "_pass").exists() and not list(out.glob(f"{TMP_PREFIX}*"))
    assert {name: v for name, v in _versions(out).items() if name in written} == written
    assert (out / "part-00002.parquet").is_file() and stage_finished(out, grown.stage_key)
    assert not stage_finished(out, first.stage_key)
    assert total.docs_in == sum(pq.read_metadata(p).num_rows for p in shards)

    # Another config: every shard is rewritten under the new shard keys.
    before = _versions(out)
    stricter = run_partition_stage(client, _run(shards, out, 1200), functools.partial(ShortDocs, 1200), print)
    assert sorted(_versions(out)) == sorted(before)
    assert all(version != before[name] for name, version in _versions(out).items())
    assert stricter.docs_out < total.docs_out
    assert stricter.docs_out == pq.read_table(sorted(map(str, out.glob("part-*.parquet")))).num_rows


def test_a_stage_keyed_as_a_whole_is_cleared_on_a_new_key(client, shards, tmp_path):
    out = tmp_path / "out"
    run_partition_stage(client, _run(shards, out, 800, incremental=False), functools.partial(ShortDocs, 800), print)
    seen = []

    def body() -> StageStats:  # what a stage of another key finds in its directory
        seen.extend(sorted(p.name for p in out.iterdir()))
        return StageStats(name="short-docs")

    run_resumable(_run(shards, out, 900, incremental=False), body)
    assert seen == ["_STAGE_KEY"]


def test_intermediate_files_stay_while_only_the_finishing_changes(shards, tmp_path):
    """Rephrase's two keys: plans and answers are made under the files key; the stage key adds the finishing."""
    out = tmp_path / "out"
    calls = []

    def body(marker: str) -> StageStats:
        assert not stage_finished(out)  # unfinished while it runs, even over a stage finished before
        plan = out / "_plan" / "part-00000.parquet"
        calls.append(plan.is_file())
        if not plan.is_file():
            plan.parent.mkdir()
            pq.write_table(pq.read_table(shards[0]), plan)
        return StageStats(name="finish", docs_in=3, docs_out=2, dropped={marker: 1})

    def run(key: str, files_key: str) -> StageStats:
        return run_resumable(StageRun(name="finish", inputs=[(shards[0], "")], output_dir=out, stage_key=key,
                                      files_key=files_key), functools.partial(body, key), sections={"extra": {"k": 1}})

    assert run("finish-a", "plan-1").dropped == {"finish-a": 1}
    assert read_stage_stats(out)["extra"] == {"k": 1}  # a stage's own section beside the counts
    assert run("finish-a", "plan-1").dropped == {"finish-a": 1} and calls == [False]  # finished: skipped
    assert run("finish-b", "plan-1").dropped == {"finish-b": 1} and calls == [False, True]  # the plan is reused
    assert stage_finished(out, "finish-b") and not stage_finished(out, "finish-a")
    run("finish-c", "plan-2")  # (a new generation key is a new stage key too)
    assert calls == [False, True, False]  # another files key: the plan is made again


def test_counts_that_do_not_add_up_and_failed_passes_leave_the_stage_unfinished(shards, tmp_path):
    out = tmp_path / "out"
    run = StageRun(name="lossy", inputs=[(shards[0], "")], output_dir=out, stage_key="k")
    with pytest.raises(RuntimeError, match="stage lossy: 5 docs in but 3 out"):
        run_resumable(run, lambda: StageStats(name="lossy", docs_in=5, docs_out=3, dropped={"x": 1}))
    assert not stage_finished(out) and read_stage_stats(out) is None

    def failing_pass() -> StageStats:
        raise ValueError("the scores of part-00000 are missing\nTraceback of the worker")

    with pytest.raises(StageFailed, match=r"^stage lossy failed: the scores of part-00000 are missing$"):
        run_cluster_stage(run, failing_pass)
    assert not stage_finished(out)
