"""Tokenize curated shards on Dask: one task per input file, resumable, with group counts.

Layout of the output directory (the same contract as a curation stage's):

    OUT/part-NNNNN.parquet, part-NNNNN.stats.json   one token shard per input file
    OUT/stats.json                                  docs and tokens, by (source, quality_level, synthetic_kind)
    OUT/_SUCCESS                                    the key of config + inputs + tokenizer files
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from distributed import Client, as_completed

from curation.io.readers import expand_inputs
from curation.io.writers import write_json_atomic
from curation.shards import ShardTask
from curation.tokens import TokenizeConfig, TokenStats, tokenize_shard
from flows.engine.stage_dir import SUCCESS, StageFailed, fingerprint_files, prepare_stage_dir, stage_key

log = logging.getLogger("ccforge")


def resolve_token_inputs(patterns: list[str], source: str | None = None) -> list[tuple[str, str]]:
    """(file, source) pairs in a fixed order; source defaults to the directory name."""
    return [(path, source or Path(path.split("://")[-1]).parent.name or "input") for path in expand_inputs(patterns)]


def tokenize_key(config: TokenizeConfig, inputs: list[tuple[str, str]], strict: bool) -> str:
    """Changes with the config, the inputs, or the tokenizer's files."""
    tokenizer_files = sorted(str(p) for p in Path(config.tokenizer).glob("*") if p.is_file())
    fingerprint = fingerprint_files([p for p, _ in inputs] + tokenizer_files)
    return stage_key("tokenize", {"config": dataclasses.asdict(config), "strict": strict,
                                  "sources": [s for _, s in inputs]}, fingerprint)


def finished_tokenize(output_dir: Path, key: str) -> TokenStats | None:
    """The stats of a tokenize run finished under `key` in `output_dir`, else None."""
    success = Path(output_dir) / SUCCESS
    if success.exists() and json.loads(success.read_text()).get("stage_key") == key:
        return TokenStats.from_dict(json.loads((Path(output_dir) / "stats.json").read_text()))
    return None


def run_tokenize(client: Client, inputs: list[tuple[str, str]], output_dir: str | Path, config: TokenizeConfig,
                 *, strict: bool = False, progress: Callable[[str], None] = log.info) -> TokenStats:
    """Tokenize every input file into `output_dir` (skipped when finished under the same key)."""
    output_dir = Path(output_dir)
    key = tokenize_key(config, inputs, strict)
    done = finished_tokenize(output_dir, key)
    if done is not None:
        progress("tokenize: finished earlier, skipped")
        return done
    started = time.perf_counter()
    prepare_stage_dir(output_dir, key)
    tasks = [ShardTask(stage_key=key, input_path=path, source=source, output_dir=str(output_dir), index=i,
                       strict=strict, batch_rows=config.batch_rows) for i, (path, source) in enumerate(inputs)]
    futures = {client.submit(tokenize_shard, config, task, pure=False): task for task in tasks}
    total = TokenStats()
    for finished, future in enumerate(as_completed(futures), start=1):
        try:
            total = total + future.result()
        except Exception as err:
            client.cancel(list(futures))
            raise StageFailed(f"tokenize failed on {futures[future].input_path}: {str(err).splitlines()[0]}") from err
        progress(f"tokenize: {finished}/{len(tasks)} shards, {total.tokens:,} tokens")
    total.seconds = time.perf_counter() - started
    write_json_atomic(total.to_dict(), output_dir / "stats.json")
    write_json_atomic({"stage_key": key, "shards": len(tasks)}, output_dir / SUCCESS)
    return total
