"""Fuzzy dedup on Dask: the passes of `curation.fuzzy_dedup.passes` mapped over shards, band-key
ranges and partitions, then the filter. The driver plans the passes and reads per-task counts and
digests: O(shards + partitions) values, never a row per document or per pair."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from distributed import Client

from curation.fuzzy_dedup.components import connected_components
from curation.fuzzy_dedup.config import FuzzyDedupConfig
from curation.fuzzy_dedup.passes import bucket_range, minhash_shard, shard_duplicates, verify_shard
from curation.io.writers import write_json_atomic
from curation.stage import StageStats
from flows.engine.cluster import cluster_mapper, map_shards, run_cluster_stage
from flows.engine.stage_dir import StageRun
from flows.engine.exact_dedup import DUPLICATES_DIR, load_duplicate_filter

log = logging.getLogger("ccforge")


def run_fuzzy_dedup(client: Client, run: StageRun, config: FuzzyDedupConfig,
                    progress: Callable[[str], None] = log.info) -> StageStats:
    """All passes over `run.inputs`; the kept rows of shard i go to part-0000i.parquet."""
    return run_cluster_stage(run, lambda: _fuzzy_dedup_passes(client, run, config, progress), progress)


def _fuzzy_dedup_passes(client: Client, run: StageRun, config: FuzzyDedupConfig,
                        progress: Callable[[str], None]) -> StageStats:
    work, count = str(run.output_dir), len(run.inputs)
    shards, parts = list(range(count)), max(1, count)
    mapped = cluster_mapper(client, run.name)
    mapped(functools.partial(minhash_shard, work=work, config=config, batch_rows=run.batch_rows, strict=run.strict),
           [path for path, _ in run.inputs], shards)
    progress(f"{run.name}: signatures of {count} shards")

    bucket_paths = [f"{work}/_buckets/part-{p:05d}.arrow" for p in range(parts)]
    mapped(functools.partial(bucket_range, work=work, shards=count, parts=parts), list(range(parts)), bucket_paths)
    similar_paths = [f"{work}/_similar/part-{i:05d}.parquet" for i in shards]
    pairs = mapped(functools.partial(verify_shard, work=work, bucket_paths=bucket_paths, config=config),
                   shards, [f"{work}/_pairs/part-{i:05d}.parquet" for i in shards], similar_paths)
    candidates, similar = sum(c for c, _ in pairs), sum(s for _, s in pairs)
    progress(f"{run.name}: {candidates} candidate pairs from the LSH buckets"
             + (f", {similar} at Jaccard >= {config.threshold}" if config.verify else ""))

    components = connected_components(similar_paths, f"{work}/_components", parts=parts,
                                      mapper=mapped, out_parts=count)
    duplicate_paths = [f"{work}/{DUPLICATES_DIR}/part-{i:05d}.parquet" for i in shards]
    per_shard = mapped(functools.partial(shard_duplicates, work=work, star_paths=components.star_paths,
                                         verify=config.verify), shards, duplicate_paths)
    removed = sum(n for n, _ in per_shard)
    summary = {"candidate_pairs": candidates, **({"verified_pairs": similar} if config.verify else {}),
               "components": components.components, "documents_in_components": components.documents_in_components,
               "removed": removed, "component_rounds": components.rounds}
    write_json_atomic(summary, run.output_dir / "clusters.json")
    progress(f"{run.name}: {removed} near-duplicates to remove ({components.rounds} rounds of components)")
    makers = [functools.partial(load_duplicate_filter, path, "fuzzy-dedup", "fuzzy_duplicate")
              for path in duplicate_paths]
    return map_shards(client, run, makers, progress, [digest for _, digest in per_shard])
