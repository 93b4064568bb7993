"""The `curate` Prefect flow: one task per stage, each stage mapped over shards on Dask."""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

from distributed import Client
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.context import FlowRunContext, get_run_context
from prefect.cache_policies import NO_CACHE

from curation.io.writers import write_json_atomic
from curation.stage import StageStats
from flows.config.curate import CurateConfig
from flows.engine.cluster import dask_client
from flows.engine.stage_dir import SUCCESS, fingerprint_files, output_shards
from flows.retry import RETRY_DELAY_SECONDS, STAGE_RETRIES, retry_if_transient
from flows.report.funnel import funnel_markdown, languages_markdown, write_curation_report
from flows.workdir_lock import workdir_lock
from flows.engine.stages import resolve_inputs, run_stage

#: One JSON line per curate run: its flow run id, start, duration, and per stage the shards written.
RUNS_LOG = "runs.jsonl"


@task(name="curation-stage", cache_policy=NO_CACHE, retries=STAGE_RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS,
      retry_condition_fn=retry_if_transient)
def stage_task(client: Client, name: str, config: CurateConfig, inputs: list[tuple[str, str]],
               input_fingerprint: str, output_dir: Path) -> StageStats:
    # Resumption is by stage and shard keys (see flows.engine.stage_dir), so Prefect's own caching stays off.
    return run_stage(client, name, config, inputs, input_fingerprint, output_dir)[0]


# The config arrives validated (pydantic); Prefect re-validating it would rebuild its models in every flow-run process.
@flow(name="curate", log_prints=True, validate_parameters=False)
def curate(config: CurateConfig) -> list[StageStats]:
    """Run the configured stages in order; the last filtering stage's shards become WORKDIR/curated/
    (the synthetic rows of `rephrase` stay in WORKDIR/rephrase/: an additional dataset).

    Only shards whose inputs changed are computed: rerun on a grown crawl, the flow curates the
    new files and reruns the global passes; WORKDIR/runs.jsonl records what each run wrote."""
    started = time.time()
    workdir = Path(config.workdir)
    inputs = resolve_inputs(config)
    all_stats: list[StageStats] = []
    work: list[dict] = []
    with workdir_lock(workdir):
        with dask_client(config.dask.scheduler, workers=config.dask.workers,
                         threads_per_worker=config.dask.threads_per_worker,
                         memory_limit=config.dask.memory_limit) as client:
            for name in config.stages:
                output_dir = workdir / name
                before = _shard_versions(output_dir)
                stats = stage_task.with_options(name=name)(
                    client, name, config, inputs, fingerprint_files([path for path, _ in inputs]), output_dir)
                all_stats.append(stats)
                inputs = [(path, "") for path in output_shards(output_dir)]
                after = _shard_versions(output_dir)
                work.append({"stage": name, "shards": len(inputs), "docs_out": stats.docs_out,
                             "shards_written": sum(1 for path, version in after.items() if before.get(path) != version)})
        filtering = [name for name in config.stages if name != "rephrase"]
        if filtering:
            publish_curated(workdir / filtering[-1], workdir / "curated")
        write_json_atomic({"stages": [s.to_dict() for s in all_stats]}, workdir / "stats.json")
        write_curation_report(all_stats, workdir / "report.md")
        _log_run(workdir, started, work)
    funnel = funnel_markdown(all_stats)
    with_languages = [s for s in all_stats if s.languages]
    if with_languages:
        funnel += f"\n\nlanguages after {with_languages[-1].name}:\n\n{languages_markdown(with_languages[-1], top=10)}"
    print(funnel)
    create_markdown_artifact(f"# Curation funnel of {workdir}\n\n{funnel}\n", key="curation-funnel",
                             description="Documents in and out of every stage")
    return all_stats


def _shard_versions(stage_dir: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of every shard's stats file: a shard whose version changed was written."""
    versions = {}
    for path in stage_dir.glob("part-*.stats.json"):
        info = path.stat()
        versions[path.name] = (info.st_ino, info.st_mtime_ns)
    return versions


def _log_run(workdir: Path, started: float, work: list[dict]) -> None:
    """Append this run's shard counts to WORKDIR/runs.jsonl (how a scheduled deployment shows
    what each run did: a run over unchanged inputs writes no shard)."""
    context = get_run_context() if FlowRunContext.get() else None
    record = {"flow_run": str(context.flow_run.id) if context and context.flow_run else None,
              "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
              "seconds": round(time.time() - started, 3), "stages": work}
    with open(workdir / RUNS_LOG, "a") as log_file:
        log_file.write(json.dumps(record) + "\n")


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
