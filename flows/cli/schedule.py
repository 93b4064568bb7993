"""`ccforge pipeline CONFIG` (crawl to exported model, once) and `ccforge schedule CONFIG` (curate or
the pipeline on a cron or interval schedule, as a served Prefect deployment)."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def add_commands(subparsers: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], None]]:
    run = subparsers.add_parser(
        "pipeline", help="crawl -> curated -> tokens -> mixture -> pretraining -> HF export, in one flow",
        description="Run the pipeline flow over a pipeline YAML (examples/pipeline.yaml): curate, train a "
                    "tokenizer, tokenize, mix, pretrain under torchrun, export to Hugging Face, write the report. "
                    "A rerun continues where a killed run stopped.")
    run.add_argument("config", help="pipeline YAML (see examples/pipeline.yaml)")
    run.add_argument("--workdir", help="override the config's workdir")
    run.add_argument("--max-steps", type=int, help="override training.train.max_steps (the mixture is planned for "
                     "that many steps: a short run of the whole path)")

    schedule = subparsers.add_parser(
        "schedule", help="serve a Prefect deployment of curate or pipeline on a cron or interval schedule",
        description="Serve a Prefect deployment that runs `curate` (a curate YAML) or `pipeline` (a pipeline YAML) "
                    "on a schedule, until interrupted. Every run reads the config again and lists the inputs "
                    "again: new crawl files are curated, finished shards reused; WORKDIR/runs.jsonl says what "
                    "each run wrote. Runs go to $PREFECT_API_URL, else to the shared server of `ccforge server start`, "
                    "else to a Prefect server this process starts (and stops).")
    schedule.add_argument("config", help="curate YAML (--flow curate) or pipeline YAML (--flow pipeline)")
    schedule.add_argument("--flow", default="curate", choices=("curate", "pipeline"), help="default curate")
    when = schedule.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", help='cron expression, e.g. "0 3 * * *" (03:00 daily)')
    when.add_argument("--interval", type=float, help="seconds between runs")
    schedule.add_argument("--name", help="deployment name (default: FLOW-CONFIGSTEM)")
    return {"pipeline": cmd_pipeline, "schedule": cmd_schedule}


def cmd_pipeline(args: argparse.Namespace) -> None:
    from flows.pipeline import pipeline
    from flows.config.pipeline import load_pipeline_config
    from flows.engine.stages import resolve_inputs
    from flows.server import command_api

    config = load_pipeline_config(args.config, **{"workdir": args.workdir, "training.train.max_steps": args.max_steps})
    resolve_inputs(config.curate)  # a bad config or a missing input fails here, before any server or cluster starts
    with command_api():
        result = pipeline(config.curate, config.workdir, config.training, config.ablation, config.evaluation)
    training = result.training
    print(f"curated: {config.curate.workdir}/curated  mixture: {result.mixture.mixture}")
    print(f"training: {training.run_dir} ({training.steps} steps, loss {training.first_loss:.3f} -> "
          f"{training.final_loss:.3f})  model: {training.hf_dir}  report: {result.report}")
    if result.evaluation:
        print(f"downstream evaluation: {result.evaluation}")
    if result.ablation:
        print(f"ablation: {result.ablation.out / 'ablation.json'}  report: {result.ablation.report}")


def cmd_schedule(args: argparse.Namespace) -> None:
    from flows.errors import UserError
    from flows.schedule import serve_schedule

    if args.interval is not None and args.interval <= 0:
        raise UserError(f"--interval {args.interval}: must be positive")
    if args.cron is not None:
        from prefect.client.schemas.schedules import CronSchedule
        from pydantic import ValidationError

        try:
            CronSchedule(cron=args.cron)
        except ValidationError:
            raise UserError(f"--cron {args.cron!r}: not a cron expression (e.g. \"0 3 * * *\")") from None
    serve_schedule(args.config, flow_name=args.flow, cron=args.cron, interval_seconds=args.interval, name=args.name)
