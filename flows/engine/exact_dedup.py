"""Exact dedup on Dask: the passes of `curation.exact_dedup` mapped over shards and hash ranges.

The driver plans the passes and reads per-task counts and digests: O(shards + partitions)
values, never a row per document (the rows move between passes through files).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
from distributed import Client

from curation.exact_dedup import ROW, ExactDedupConfig, group_partition, hash_shard, shard_duplicates
from curation.stage import RowDropFilter, StageStats
from flows.engine.cluster import map_on_cluster, map_shards, run_cluster_stage
from flows.engine.stage_dir import StageRun

log = logging.getLogger("ccforge")

DUPLICATES_DIR = "duplicates.parquet"


def run_exact_dedup(client: Client, run: StageRun, config: ExactDedupConfig,
                    progress: Callable[[str], None] = log.info) -> StageStats:
    """Hash every shard, find the copies per hash range, list them per shard, filter every shard."""
    return run_cluster_stage(run, lambda: _exact_dedup_passes(client, run, config, progress), progress)


def _exact_dedup_passes(client: Client, run: StageRun, config: ExactDedupConfig,
                        progress: Callable[[str], None]) -> StageStats:
    work, count = run.output_dir, len(run.inputs)
    shards, parts = list(range(count)), max(1, count)  # a hash range holds about one shard's hashes
    hash_paths = [str(work / "_hashes" / f"part-{i:05d}.arrow") for i in shards]
    map_on_cluster(client, run.name, functools.partial(hash_shard, config=config, parts=parts, strict=run.strict),
                   [path for path, _ in run.inputs], shards, hash_paths)
    progress(f"{run.name}: hashed {count} shards")
    group_paths = [str(work / "_groups" / f"part-{p:05d}.arrow") for p in range(parts)]
    map_on_cluster(client, run.name, functools.partial(group_partition, hash_paths=hash_paths),
                   list(range(parts)), group_paths)
    duplicate_paths = [str(work / DUPLICATES_DIR / f"part-{i:05d}.parquet") for i in shards]
    per_shard = map_on_cluster(client, run.name, functools.partial(shard_duplicates, group_paths=group_paths),
                               shards, duplicate_paths)
    progress(f"{run.name}: {sum(n for n, _ in per_shard)} duplicates found")
    makers = [functools.partial(load_duplicate_filter, path) for path in duplicate_paths]
    return map_shards(client, run, makers, progress, [digest for _, digest in per_shard])


def load_duplicate_filter(duplicates_path: str, name: str = "exact-dedup",
                          reason: str = "exact_duplicate") -> RowDropFilter:
    """The last pass's stage for one shard: drop the rows its duplicates file lists."""
    return RowDropFilter(name, reason, pq.read_table(Path(duplicates_path), columns=[ROW])[ROW].to_numpy())
