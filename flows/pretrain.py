"""The `pretrain` Prefect flow: torchrun as a subprocess, its log streamed, then HF export.

Training runs in its own process group (torchrun, even for one process), so the flow's
process never holds model memory or torch threads. The run always passes `--resume`: a
rerun after a crash continues from the newest checkpoint; a run whose newest checkpoint is
its last step under the same config starts no trainer at all. A non-zero exit fails the flow run with the ranks' last error lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.errors import TrainingFailed
from flows.retry import RETRY_DELAY_SECONDS, retry_if_killed
from flows.report.summary import last_evaluation, read_metrics
from training.trainer.checkpoint import finished_checkpoint
from training.trainer.config import load_train_config
from training.trainer.launch import LaunchSpec, run_torchrun, torchrun_command


@dataclass(frozen=True)
class PretrainResult:
    run_dir: Path
    hf_dir: Path | None
    steps: int
    first_loss: float
    final_loss: float
    tokens: int


def training_summary(run_dir: Path) -> dict:
    """The run's steps, tokens, losses and speed, and its last evaluation (`eval/SET/METRIC`)."""
    records = read_metrics(run_dir / "metrics.jsonl")
    steady = records[1:] or records
    return {"steps": records[-1]["step"], "tokens": records[-1]["tokens"], "first_loss": records[0]["loss"],
            "final_loss": records[-1]["loss"], "skipped_steps": records[-1]["skipped_steps"],
            "tokens_per_s": sum(r["tokens_per_s"] for r in steady) / len(steady)} | last_evaluation(records)


def summary_markdown(summary: dict, run_dir: Path) -> str:
    rows = "\n".join(f"| {key} | {value:,.4g} |" if isinstance(value, float) else f"| {key} | {value:,} |"
                     for key, value in summary.items())
    return f"# Training run {run_dir}\n\n| metric | value |\n|---|---:|\n{rows}\n"


@task(name="torchrun", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=RETRY_DELAY_SECONDS,
      retry_condition_fn=retry_if_killed)
def torchrun_task(config: str, overrides: dict, nproc: int) -> None:
    code, errors = run_torchrun(torchrun_command(LaunchSpec(nproc=nproc), config, overrides=overrides, resume=True,
                                                 stop_after=None), print)
    if code != 0:
        raise TrainingFailed(code, errors)


@task(name="export-hf", cache_policy=NO_CACHE)
def export_task(run_dir: Path, output: Path) -> Path:
    from training.trainer.export import export_hf

    source = export_hf(run_dir, output)
    print(f"exported {source} to {output}")
    return output


@flow(name="pretrain", log_prints=True)
def pretrain(config: str, *, overrides: dict | None = None, nproc: int = 1, export_to: str | None = None) -> PretrainResult:
    """Train with `ccforge train CONFIG` semantics under torchrun; export the newest checkpoint."""
    overrides = overrides or {}
    cfg = load_train_config(config, overrides)  # a bad config fails before any process starts
    run_dir = Path(cfg.out)
    finished = finished_checkpoint(run_dir / "checkpoints", cfg.model_dump(mode="json"))
    if finished is None:
        torchrun_task(config, overrides, nproc)
    else:
        print(f"pretrain: {finished} is step {cfg.max_steps} of this config: finished earlier, training skipped")
    summary = training_summary(run_dir)
    create_markdown_artifact(summary_markdown(summary, run_dir), key="training-summary", description="Training")
    hf_dir = export_task(run_dir, Path(export_to)) if export_to else None
    return PretrainResult(run_dir=run_dir, hf_dir=hf_dir, steps=summary["steps"], first_loss=summary["first_loss"],
                          final_loss=summary["final_loss"], tokens=summary["tokens"])
