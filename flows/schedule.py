"""Scheduled curation: a Prefect deployment of `curate` (or `pipeline`) over a config file, served
by this process on a cron or interval schedule.

Each run re-reads the config file (edits apply from the next run) and lists the inputs again: new
crawl files are curated, finished shards are reused (see flows.engine.stage_dir), and WORKDIR/runs.jsonl
records what each run wrote. The runner starts one flow run at a time, so a run that outlasts the
interval delays the next rather than racing it over the same workdir.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from prefect import flow
from prefect.deployments.runner import EntrypointType

from flows.config.curate import load_curate_config
from flows.curate import curate
from flows.server import command_api

SCHEDULED_FLOWS = ("curate", "pipeline")


@flow(name="scheduled-curate", log_prints=True)
def curate_from_file(config_path: str) -> dict:
    """`curate` over the config at `config_path`, read afresh; returns docs in and out."""
    stats = curate(load_curate_config(config_path))
    return {"docs_in": stats[0].docs_in, "docs_out": stats[-1].docs_out}


@flow(name="scheduled-pipeline", log_prints=True)
def pipeline_from_file(config_path: str) -> str:
    """`pipeline` over the pipeline config at `config_path`, read afresh; returns the report path."""
    # Imported here: they load torch, which a schedule of curate alone does not need.
    from flows.config.pipeline import load_pipeline_config
    from flows.pipeline import pipeline

    config = load_pipeline_config(config_path)
    return str(pipeline(config.curate, config.workdir, config.training, config.ablation, config.evaluation).report)


def serve_schedule(config_path: str | Path, *, flow_name: str = "curate", cron: str | None = None,
                   interval_seconds: float | None = None, name: str | None = None) -> None:
    """Check the config, then serve the deployment until interrupted (Ctrl-C pauses its schedule)."""
    if flow_name not in SCHEDULED_FLOWS:
        raise ValueError(f"flow {flow_name!r}: choose from {', '.join(SCHEDULED_FLOWS)}")
    if (cron is None) == (interval_seconds is None):
        raise ValueError("give exactly one of --cron and --interval")
    config_path = str(Path(config_path).resolve())
    # A bad config fails here, once, not at every scheduled run.
    if flow_name == "curate":
        load_curate_config(config_path)
    else:
        from flows.config.pipeline import load_pipeline_config

        load_pipeline_config(config_path)
    scheduled = curate_from_file if flow_name == "curate" else pipeline_from_file
    with command_api():
        scheduled.serve(name=name or f"{flow_name}-{Path(config_path).stem}", cron=cron,
                        interval=timedelta(seconds=interval_seconds) if interval_seconds is not None else None,
                        parameters={"config_path": config_path}, limit=1, entrypoint_type=EntrypointType.MODULE_PATH)
