"""`ccforge eval MODEL_DIR`: lm-evaluation-harness tasks and bits-per-byte text sets on an exported model."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from flows.errors import UserError
from training.downstream_eval import DTYPES, RESULTS_NAME


def add_commands(commands: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], None]]:
    parser = commands.add_parser(
        "eval", help="downstream evaluation of an exported model with lm-evaluation-harness (local tasks only)",
        description="Run EleutherAI's lm-evaluation-harness on a `ccforge export-hf` directory, offline: lm-eval "
                    "tasks whose data files are local, and text sets (local documents) scored for word and byte "
                    "perplexity and bits per byte. Prints a table and writes lm-eval's results as JSON.")
    parser.add_argument("model_dir", help="an exported model: config.json, model.safetensors, tokenizer files")
    parser.add_argument("--tasks", nargs="+", action="extend", default=[], metavar="NAME",
                        help="lm-eval task, group or tag names, or task YAML files (their data must be local)")
    parser.add_argument("--include-path", nargs="+", action="extend", default=[], metavar="DIR",
                        help="directories of task YAMLs (dataset_path: json or parquet, with data_files) to name "
                        "in --tasks")
    parser.add_argument("--text-set", nargs="+", action="extend", default=[], metavar="NAME=PATH",
                        help="bits per byte on local documents: a JSONL or Parquet file, glob or directory with a "
                        "text column; NAME is the task name in the results")
    parser.add_argument("--limit", type=int, help="evaluate only the first N documents of each task")
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass (default 8)")
    parser.add_argument("--device", help="torch device (default: cuda when there is one, else cpu)")
    parser.add_argument("--dtype", choices=DTYPES, default="auto",
                        help="weights' dtype (default auto: as exported)")
    parser.add_argument("--output", help=f"results JSON (default MODEL_DIR/{RESULTS_NAME})")
    return {"eval": cmd_eval}


def cmd_eval(args: argparse.Namespace) -> None:
    from training.downstream_eval import (DownstreamEvalConfig, DownstreamEvalError, TextSet, format_results,
                                          run_downstream_eval)

    try:
        cfg = DownstreamEvalConfig(model_dir=Path(args.model_dir), tasks=tuple(args.tasks),
                                   include_paths=tuple(Path(p) for p in args.include_path),
                                   text_sets=tuple(TextSet.from_path(*_name_and_path(spec)) for spec in args.text_set),
                                   limit=args.limit, batch_size=args.batch_size, device=args.device, dtype=args.dtype)
        results = run_downstream_eval(cfg)
    except DownstreamEvalError as err:
        raise UserError(str(err)) from err
    output = Path(args.output or cfg.model_dir / RESULTS_NAME)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2))
    print(format_results(results))
    print(f"results: {output}")


def _name_and_path(spec: str) -> tuple[str, str]:
    name, sep, path = spec.partition("=")
    if not sep or not path:
        raise UserError(f"--text-set {spec!r}: give NAME=PATH (a JSONL or Parquet file, glob or directory)")
    return name, path
