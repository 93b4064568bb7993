"""Tokenize one input file into one token shard: the unit of parallelism and of restart.

    OUT/part-00003.parquet         token rows of input file 3 (zstd, footer with group counts)
    OUT/part-00003.stats.json      written last: the shard is done
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import pyarrow as pa

from curation.io.readers import InputFileError, read_batches
from curation.io.writers import ShardWriter, write_json_atomic
from curation.shards import ShardTask, discard_shard, finished_stats
from curation.schema import N_TOKENS
from curation.stage import text_bytes
from curation.tokens.stage import TOKEN_SCHEMA, GroupCounts, TokenizeConfig, TokenizeStage

log = logging.getLogger(__name__)


@dataclass
class TokenStats:
    """Counts of a tokenize run (or one shard of it); shards add up with `+`."""

    name: str = "tokenize"
    docs: int = 0
    tokens: int = 0
    text_bytes: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # records the reader rejected
    seconds: float = 0.0
    groups: GroupCounts = field(default_factory=GroupCounts.empty)
    errors: list[str] = field(default_factory=list)

    def __add__(self, other: TokenStats) -> TokenStats:
        dropped = {k: self.dropped.get(k, 0) + other.dropped.get(k, 0) for k in {*self.dropped, *other.dropped}}
        return TokenStats(name=self.name, docs=self.docs + other.docs, tokens=self.tokens + other.tokens,
                          text_bytes=self.text_bytes + other.text_bytes, dropped=dropped,
                          seconds=self.seconds + other.seconds, groups=self.groups + other.groups,
                          errors=self.errors + other.errors)

    def check_accounting(self) -> None:
        """Raise if the group counts (what mixtures are planned from) disagree with the totals."""
        grouped = (sum(self.groups.docs.values()), sum(self.groups.tokens.values()))
        if grouped != (self.docs, self.tokens):
            raise RuntimeError(f"{self.name}: {self.docs} docs and {self.tokens} tokens, but the groups "
                               f"count {grouped[0]} and {grouped[1]}")

    def to_dict(self) -> dict:
        return {"name": self.name, "docs": self.docs, "tokens": self.tokens, "text_bytes": self.text_bytes,
                "dropped": dict(sorted(self.dropped.items())), "seconds": round(self.seconds, 3),
                "groups": self.groups.to_list(), "errors": self.errors}

    @classmethod
    def from_dict(cls, data: dict) -> TokenStats:
        return cls(**(data | {"groups": GroupCounts.from_list(data["groups"])}))


def tokenize_shard(config: TokenizeConfig, task: ShardTask) -> TokenStats:
    """Tokenize `task.input_path` into `task.output_path` unless done under the same key."""
    done = finished_stats(task, TokenStats)
    if done is not None:
        return done
    discard_shard(task)
    started = time.perf_counter()
    stage = TokenizeStage(config)
    stats = TokenStats()
    writer = ShardWriter(task.output_path, row_group_rows=config.row_group_rows)
    try:
        for raw in read_batches(task.input_path, source=task.source, batch_rows=config.batch_rows):
            tokens = stage.run(raw.table)
            writer.write(tokens)
            stats = stats + _batch_stats(raw.table, tokens, raw.rejected.num_rows)
    except InputFileError as err:
        if task.strict:
            writer.abort()
            raise
        log.error("%s", err)
        stats.errors.append(str(err))
    writer.close(empty_schema=TOKEN_SCHEMA, metadata=stage.metadata(stats.groups))
    stats.seconds = time.perf_counter() - started
    write_json_atomic({"stage_key": task.stage_key, "stats": stats.to_dict()}, task.stats_path)
    return stats


def _batch_stats(documents: pa.Table, tokens: pa.Table, rejected_rows: int) -> TokenStats:
    return TokenStats(docs=tokens.num_rows, tokens=int(tokens[N_TOKENS].to_numpy().sum()),
                      text_bytes=text_bytes(documents), groups=GroupCounts.of(tokens),
                      dropped={"rejected_by_reader": rejected_rows} if rejected_rows else {})
