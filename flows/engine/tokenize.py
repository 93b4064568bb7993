"""Tokenize curated shards on Dask: one shard task per input file, under the stage-directory
protocol (`flows.engine.stage_dir`), with token counts by (source, quality_level, synthetic_kind).

Token shards are keyed like a curation stage's: by the tokenize config, the tokenizer's files,
the token shard columns (shards made before a column was added are made again) and their input
file, so tokenizing a grown set of curated shards computes only the new ones.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from pathlib import Path

from distributed import Client

from curation.io.readers import expand_inputs
from curation.tokens import TOKEN_SCHEMA, TokenizeConfig, TokenStats, tokenize_shard
from flows.engine.cluster import run_cluster_stage, run_shard_tasks
from flows.engine.stage_dir import StageRun, fingerprint_files, stage_key

log = logging.getLogger("ccforge")


def resolve_token_inputs(patterns: list[str], source: str | None = None) -> list[tuple[str, str]]:
    """(file, source) pairs in a fixed order; source defaults to the directory name."""
    return [(path, source or Path(path.split("://")[-1]).parent.name or "input") for path in expand_inputs(patterns)]


def tokenize_run(config: TokenizeConfig, inputs: list[tuple[str, str]], output_dir: str | Path, *,
                 strict: bool = False) -> StageRun:
    """The stage run of tokenizing `inputs`: its key changes with the config, the inputs, or the tokenizer's files."""
    tokenizer_files = sorted(str(p) for p in Path(config.tokenizer).glob("*") if p.is_file())
    material = {"config": dataclasses.asdict(config), "strict": strict, "tokenizer": fingerprint_files(tokenizer_files),
                "columns": TOKEN_SCHEMA.names}
    key = stage_key("tokenize", material | {"sources": [s for _, s in inputs]}, fingerprint_files([p for p, _ in inputs]))
    return StageRun(name="tokenize", inputs=inputs, output_dir=Path(output_dir), stage_key=key,
                    config_key=stage_key("tokenize", material, ""), stats_type=TokenStats, strict=strict,
                    batch_rows=config.batch_rows)


def run_tokenize(client: Client, inputs: list[tuple[str, str]], output_dir: str | Path, config: TokenizeConfig,
                 *, strict: bool = False, progress: Callable[[str], None] = log.info) -> TokenStats:
    """Tokenize every input file into `output_dir` (skipped when finished under the same key)."""
    run = tokenize_run(config, inputs, output_dir, strict=strict)
    shard_functions = [functools.partial(tokenize_shard, config)] * len(inputs)
    return run_cluster_stage(run, lambda: run_shard_tasks(client, run, shard_functions, progress), progress)
