"""Running one named curation stage over shards on a Dask client (no Prefect: the `curate`
flow wraps these calls in tasks, `ccforge stage` calls them directly)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from distributed import Client

from classifiers.fingerprint import model_fingerprint
from curation.io.pieces import split_inputs
from curation.io.readers import expand_inputs
from curation.stage import Stage, StageStats
from flows.config.curate import CurateConfig
from flows.engine.cluster import run_partition_stage
from flows.engine.stage_dir import StageRun, stage_key

# Each stage's own modules are imported when it runs: a command that runs fuzzy dedup does not load
# jusText, fastText or torch (imports are most of a small run's fixed cost).

#: Stages whose work releases the GIL (numba kernels, Arrow, numpy, Rust tokenizers): on a LocalCluster
#: they run as threads of one process, with no worker start-up, no pickling and one copy of the imports.
THREADED_STAGES = frozenset({"fuzzy-dedup", "substring-dedup"})


def stage_config(name: str, config: CurateConfig) -> object:
    return {"extract": config.extract, "langid": config.langid, "exact-dedup": config.exact_dedup,
            "fuzzy-dedup": config.fuzzy_dedup, "substring-dedup": config.substring_dedup,
            "classify": config.classify, "heuristics": config.heuristics, "rephrase": config.rephrase}[name]


def stage_factory(name: str, config: CurateConfig) -> Callable[[], Stage]:
    """A picklable zero-argument constructor, called on the worker that runs a shard."""
    if name == "extract":
        from curation.extract import Extractor

        return functools.partial(Extractor, config.extract)
    if name == "langid":
        from curation.langid import LanguageId

        return functools.partial(LanguageId, config.langid)
    if name == "heuristics":
        from curation.heuristics import HeuristicFilter

        return functools.partial(HeuristicFilter, config.heuristics)
    raise ValueError(f"{name} is not a per-partition stage")


def resolve_inputs(config: CurateConfig) -> list[tuple[str, str]]:
    """(file, source) pairs in a fixed order; source defaults to the directory name."""
    pairs: list[tuple[str, str]] = []
    for spec in config.inputs:
        for path in expand_inputs([spec.path]):
            pairs.append((path, spec.source or Path(path.split("://")[-1]).parent.name or "input"))
    if not pairs:
        raise ValueError("no inputs: give --input PATH or `inputs:` in the config")
    return split_inputs(pairs, config.split_bytes) if config.split_bytes else pairs


def run_stage(client: Client, name: str, config: CurateConfig, inputs: list[tuple[str, str]],
              input_fingerprint: str, output_dir: Path, progress: Callable[[str], None] = print,
              ) -> tuple[StageStats, str]:
    """Run one named stage over `inputs` into `output_dir`; returns its stats and stage key."""
    if name == "classify":  # its key also hashes the models' and reused thresholds' contents
        from flows.engine.classify import run_classify_stage

        return run_classify_stage(client, config.classify, inputs, input_fingerprint, output_dir,
                                  keep_rejects=config.keep_rejects, strict=config.strict,
                                  batch_rows=config.batch_rows, progress=progress)
    if name == "rephrase":  # generation runs in this process; its keys also cover the model and prompts
        from flows.engine.rephrase import run_rephrase_stage

        return run_rephrase_stage(config.rephrase, inputs, input_fingerprint, output_dir, strict=config.strict,
                                  batch_rows=config.batch_rows, progress=progress)
    material = {"stage": stage_config(name, config), "keep_rejects": config.keep_rejects, "strict": config.strict}
    if name == "substring-dedup":
        tokenizer = config.substring_dedup.tokenizer  # its contents: a new file at the same path reruns the stage
        material["tokenizer_digest"] = model_fingerprint(tokenizer) if tokenizer else None
    key = stage_key(name, material, input_fingerprint)
    run = StageRun(name=name, inputs=inputs, output_dir=output_dir, stage_key=key,
                   config_key=stage_key(name, material, ""), keep_rejects=config.keep_rejects,
                   strict=config.strict, batch_rows=config.batch_rows)
    if name == "exact-dedup":
        from flows.engine.exact_dedup import run_exact_dedup

        return run_exact_dedup(client, run, config.exact_dedup, progress), key
    if name == "fuzzy-dedup":
        from flows.engine.fuzzy_dedup import run_fuzzy_dedup

        return run_fuzzy_dedup(client, run, config.fuzzy_dedup, progress), key
    if name == "substring-dedup":
        from flows.engine.substring_dedup import run_substring_dedup

        return run_substring_dedup(client, run, config.substring_dedup, progress), key
    return run_partition_stage(client, run, stage_factory(name, config), progress), key
