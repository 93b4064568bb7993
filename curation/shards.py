"""Running a stage over one shard: read in batches, run, write atomically, count, mark done.

This is the unit of parallelism and of restart. Layout of a stage directory:

    WORKDIR/<stage>/part-00003.parquet        kept rows of input shard 3
    WORKDIR/<stage>/part-00003.stats.json     written last: the shard is done
    WORKDIR/<stage>/rejected/part-00003.parquet   quarantined rows (bad input always;
                                                  every drop when keep_rejects)
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from curation.io.readers import InputFileError, RawBatch, read_batches
from curation.io.writers import ShardWriter, conform, write_json_atomic
from curation.schema import CRAWL_DATE, DOCUMENT_SCHEMA, DROP_REASON, ID, PAYLOAD, RAW, SOURCE, TEXT, URL
from curation.stage import Stage, StageResult, StageStats, text_bytes

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Drop reasons that mean the input itself was bad: always quarantined, never only counted.
BAD_INPUT_REASONS = frozenset({
    "broken_warc_record", "truncated_warc_record", "bad_json", "missing_text",
    "unknown_charset", "undecodable", "oversized", "unparseable_html",
})

#: One schema for every rejected row, whichever stage or reader produced it.
REJECTED_SCHEMA = pa.schema([
    (ID, pa.string()), (SOURCE, pa.string()), (URL, pa.string()), (CRAWL_DATE, pa.string()),
    (DROP_REASON, pa.string()), (TEXT, pa.string()), (PAYLOAD, pa.binary()), (RAW, pa.string()),
])


@dataclass(frozen=True, kw_only=True)
class ShardTask:
    """One input shard of one stage. `stage_key` identifies stage config + inputs."""

    stage_key: str
    input_path: str
    source: str
    output_dir: str
    index: int
    keep_rejects: bool = False
    strict: bool = False
    batch_rows: int = 1000

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir) / f"part-{self.index:05d}.parquet"

    @property
    def stats_path(self) -> Path:
        return Path(self.output_dir) / f"part-{self.index:05d}.stats.json"

    @property
    def rejected_path(self) -> Path:
        return Path(self.output_dir) / "rejected" / f"part-{self.index:05d}.parquet"


def finished_stats(task: ShardTask, stats_type: type[T] = StageStats) -> T | None:
    """The counts (a `stats_type`: StageStats, or TokenStats for token shards) of a shard finished
    under the same key, else None."""
    if not (task.stats_path.exists() and task.output_path.exists()):
        return None
    data = json.loads(task.stats_path.read_text())
    if data.get("stage_key") != task.stage_key:
        return None
    return stats_type.from_dict(data["stats"])


def discard_shard(task: ShardTask) -> None:
    """Remove a shard of another key (earlier inputs or decisions) before writing it again: its
    stats go first, so a kill from here on leaves the shard unfinished, never stale-but-finished."""
    for stale in (task.stats_path, task.rejected_path, task.output_path):
        stale.unlink(missing_ok=True)


def run_shard(stage: Stage, task: ShardTask) -> StageStats:
    """Run `stage` over one shard unless it is already done; returns the shard's counts."""
    done = finished_stats(task)
    if done is not None:
        return done
    discard_shard(task)
    started = time.perf_counter()
    stats = StageStats(name=stage.name)
    kept_writer = ShardWriter(task.output_path)
    rejected_writer = ShardWriter(task.rejected_path)
    try:
        for raw in read_batches(task.input_path, source=task.source, batch_rows=task.batch_rows):
            _run_batch(stage, raw, task, stats, kept_writer, rejected_writer)
    except InputFileError as err:
        if task.strict:
            kept_writer.abort()
            rejected_writer.abort()
            raise
        log.error("%s", err)
        stats.errors.append(str(err))
    kept_writer.close(empty_schema=DOCUMENT_SCHEMA)
    rejected_writer.close()
    stats.seconds = time.perf_counter() - started
    stats.check_accounting()
    write_json_atomic({"stage_key": task.stage_key, "stats": stats.to_dict()}, task.stats_path)
    return stats


def _run_batch(stage: Stage, raw: RawBatch, task: ShardTask, stats: StageStats,
               kept_writer: ShardWriter, rejected_writer: ShardWriter) -> None:
    result = stage.run(raw.table)
    stats.add_result(raw.table.num_rows, _input_bytes(raw.table), result)
    # Records the reader already rejected count as this stage's drops.
    stats.add_result(raw.rejected.num_rows, 0, StageResult(kept=raw.table.slice(0, 0), rejected=raw.rejected))
    kept_writer.write(result.kept)
    for rejected in (raw.rejected, result.rejected):
        quarantined = rejected if task.keep_rejects else rejected.filter(
            pc.is_in(rejected[DROP_REASON], pa.array(sorted(BAD_INPUT_REASONS))))
        if quarantined.num_rows:
            rejected_writer.write(conform(quarantined, REJECTED_SCHEMA))


def _input_bytes(table: pa.Table) -> int:
    if PAYLOAD in table.column_names:
        return int(pc.sum(pc.binary_length(table[PAYLOAD])).as_py() or 0)
    return text_bytes(table)
