"""Substring dedup on Dask: the passes of `curation.substring_dedup.passes` on the cluster, then a cut per shard.

Working files live under the stage directory (see `curation.substring_dedup.passes`): `_windows/`,
`_candidates/`, `_contents/`, `_confirmed/` and `spans.parquet/part-NNNNN.parquet` (row, id, start,
end: character spans cut from the input texts). Each shard's spans digest is its decision, so a
rerun after new inputs re-cuts only the shards whose spans changed.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from distributed import Client

from curation.stage import StageStats
from curation.substring_dedup.config import SubstringDedupConfig
from curation.substring_dedup.cut import load_span_cutter
from curation.substring_dedup.passes import substring_spans
from flows.engine.cluster import cluster_mapper, map_shards, run_cluster_stage
from flows.engine.stage_dir import StageRun

log = logging.getLogger("ccforge")


def run_substring_dedup(client: Client, run: StageRun, config: SubstringDedupConfig,
                        progress: Callable[[str], None] = log.info) -> StageStats:
    """All passes over `run.inputs`; the cut rows of shard i go to part-0000i.parquet."""
    return run_cluster_stage(run, lambda: _substring_dedup_passes(client, run, config, progress), progress)


def _substring_dedup_passes(client: Client, run: StageRun, config: SubstringDedupConfig,
                            progress: Callable[[str], None]) -> StageStats:
    paths = [path for path, _ in run.inputs]
    digests = substring_spans(paths, run.output_dir, config, mapper=cluster_mapper(client, run.name),
                              batch_rows=run.batch_rows, strict=run.strict, progress=progress)
    makers = [functools.partial(load_span_cutter, str(run.output_dir), shard, config.min_doc_chars)
              for shard in range(len(paths))]
    return map_shards(client, run, makers, progress, digests)
