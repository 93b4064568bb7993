"""The `curate` Prefect flow: one task per stage, each stage mapped over shards on Dask."""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from distributed import Client
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from curation.extract import Extractor
from curation.heuristics import HeuristicFilter
from curation.io.readers import expand_inputs
from curation.io.writers import write_json_atomic
from curation.langid import LanguageId
from curation.stage import Stage, StageStats
from flows.config import CurateConfig
from flows.engine import (
    SUCCESS, StageRun, dask_client, fingerprint_files, output_shards, run_exact_dedup,
    run_partition_stage, stage_key,
)
from flows.fuzzy_dedup import run_fuzzy_dedup
from flows.report import funnel_markdown, languages_markdown, write_curation_report


def stage_config(name: str, config: CurateConfig) -> object:
    return {"extract": config.extract, "langid": config.langid, "exact-dedup": config.exact_dedup,
            "fuzzy-dedup": config.fuzzy_dedup, "heuristics": config.heuristics}[name]


def stage_factory(name: str, config: CurateConfig) -> Callable[[], Stage]:
    """A picklable zero-argument constructor, called on the worker that runs a shard."""
    if name == "extract":
        return functools.partial(Extractor, config.extract)
    if name == "langid":
        return functools.partial(LanguageId, config.langid)
    if name == "heuristics":
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
    return pairs


def run_stage(client: Client, name: str, config: CurateConfig, inputs: list[tuple[str, str]],
              input_fingerprint: str, output_dir: Path, progress: Callable[[str], None] = print,
              ) -> tuple[StageStats, str]:
    """Run one named stage over `inputs` into `output_dir`; returns its stats and stage key."""
    key = stage_key(name, {"stage": stage_config(name, config), "keep_rejects": config.keep_rejects,
                           "strict": config.strict}, input_fingerprint)
    run = StageRun(name=name, inputs=inputs, output_dir=output_dir, stage_key=key,
                   keep_rejects=config.keep_rejects, strict=config.strict, batch_rows=config.batch_rows)
    if name == "exact-dedup":
        return run_exact_dedup(client, run, config.exact_dedup, progress), key
    if name == "fuzzy-dedup":
        return run_fuzzy_dedup(client, run, config.fuzzy_dedup, progress), key
    return run_partition_stage(client, run, stage_factory(name, config), progress), key


@task(name="curation-stage", cache_policy=NO_CACHE)
def stage_task(client: Client, name: str, config: CurateConfig, inputs: list[tuple[str, str]],
               input_fingerprint: str, output_dir: Path) -> tuple[StageStats, str]:
    # Resumption is by stage key (see flows.engine), so Prefect's own caching stays off.
    return run_stage(client, name, config, inputs, input_fingerprint, output_dir)


@flow(name="curate", log_prints=True)
def curate(config: CurateConfig) -> list[StageStats]:
    """Run the configured stages in order; the last stage's shards become WORKDIR/curated/."""
    workdir = Path(config.workdir)
    inputs = resolve_inputs(config)
    fingerprint = fingerprint_files([path for path, _ in inputs])
    all_stats: list[StageStats] = []
    with dask_client(config.dask.scheduler, workers=config.dask.workers,
                     threads_per_worker=config.dask.threads_per_worker,
                     memory_limit=config.dask.memory_limit) as client:
        for name in config.stages:
            output_dir = workdir / name
            stats, fingerprint = stage_task.with_options(name=name)(
                client, name, config, inputs, fingerprint, output_dir)
            all_stats.append(stats)
            inputs = [(path, "") for path in output_shards(output_dir)]
    publish_curated(workdir / config.stages[-1], workdir / "curated")
    write_json_atomic({"stages": [s.to_dict() for s in all_stats]}, workdir / "stats.json")
    write_curation_report(all_stats, workdir / "report.md")
    print(funnel_markdown(all_stats))
    with_languages = [s for s in all_stats if s.languages]
    if with_languages:
        print(f"\nlanguages after {with_languages[-1].name}:\n{languages_markdown(with_languages[-1], top=10)}")
    return all_stats


def publish_curated(stage_dir: Path, curated_dir: Path) -> None:
    """Hard-link (or copy) the final stage's shards into WORKDIR/curated/."""
    if curated_dir.exists():
        shutil.rmtree(curated_dir)
    curated_dir.mkdir(parents=True)
    for shard in output_shards(stage_dir):
        target = curated_dir / Path(shard).name
        try:
            os.link(shard, target)
        except OSError:
            shutil.copy2(shard, target)
    shutil.copy2(stage_dir / SUCCESS, curated_dir / SUCCESS)
