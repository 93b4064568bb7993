"""`ccforge rephrase`: Nemotron-CC synthetic rephrasing of curated shards, alone (no Prefect, no Dask)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from flows.errors import UserError

EXAMPLE = "examples/rephrase.yaml"


def add_commands(subparsers: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], None]]:
    parser = subparsers.add_parser(
        "rephrase", help="synthetic data: the five Nemotron-CC tasks, routed by quality level, local model or server",
        description="Rephrase curated documents: low quality (buckets 0-11) in a Wikipedia-like style; high "
                    "quality into QA pairs, distilled text, extracted knowledge and knowledge lists. Resumable.")
    parser.add_argument("--input", nargs="+", required=True,
                        help="curated shards (Parquet/JSONL with id, text, quality_bucket or quality_level)")
    parser.add_argument("--output", required=True, help="directory for synthetic shards, stats.json, _SUCCESS")
    parser.add_argument("--config", help=f"YAML whose rephrase: section is used (see {EXAMPLE})")
    parser.add_argument("--backend", choices=["local", "http"])
    parser.add_argument("--model", help="local: a causal LM directory; http: the model name the server serves")
    parser.add_argument("--tokenizer", help="local: tokenizer directory (a ccforge export has none); "
                        "http: a local tokenizer for chunk budgets (default: an estimate)")
    parser.add_argument("--endpoint", help="http: base URL of an OpenAI-compatible server, e.g. http://localhost:8000/v1")
    parser.add_argument("--tasks", help="comma-separated subset of wiki,diverse_qa,distill,extract_knowledge,knowledge_list")
    parser.add_argument("--high-quality-buckets", metavar="FIRST-LAST",
                        help="buckets of the four high-quality tasks (default 12-19; production recipe 18-19)")
    parser.add_argument("--missing-quality", choices=["error", "low", "high"],
                        help="documents without quality columns: error (default), or treat them all as low/high")
    parser.add_argument("--max-docs", type=int, help="stop after the first N documents that are rephrased")
    parser.add_argument("--max-new-tokens", type=int, help="cap every task's output (quick runs)")
    parser.add_argument("--prefill", action=argparse.BooleanOptionalAction, default=None,
                        help="start each answer with the task's opening line (assistant prefill)")
    parser.add_argument("--batch-size", type=int, help="local: chunks per generate() call; http: answers per file")
    parser.add_argument("--concurrency", type=int, help="http: requests in flight")
    parser.add_argument("--rps", type=float, help="http: requests per second at most")
    parser.add_argument("--device", help="local: auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--batch-rows", type=int, default=1000, help="documents planned per batch")
    parser.add_argument("--strict", action="store_true", help="stop at the first unreadable input file")
    return {"rephrase": cmd_rephrase}


def _buckets(text: str | None) -> list[int] | None:
    if text is None:
        return None
    first, sep, last = text.partition("-")
    if not (sep and first.isdigit() and last.isdigit()):
        raise UserError(f"--high-quality-buckets {text!r}: expected FIRST-LAST, e.g. 18-19")
    return [int(first), int(last)]


def rephrase_overrides(args: argparse.Namespace, file_backend: str | None) -> dict:
    """The command line's settings as a partial `rephrase:` mapping (None: not given); --model,
    --tokenizer and --batch-size go to the section of the backend in use."""
    backend = args.backend or file_backend
    if backend is None:
        backend = "http" if (args.endpoint or args.concurrency or args.rps) else "local" if args.model else None
    shared = {"model": args.model, "tokenizer": args.tokenizer, "batch_size": args.batch_size}
    sections = {"local": shared | {"device": args.device},
                "http": shared | {"endpoint": args.endpoint, "concurrency": args.concurrency,
                                  "requests_per_second": args.rps}}
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    overrides = {"backend": backend, "tasks": tasks, "high_quality_buckets": _buckets(args.high_quality_buckets),
                 "missing_quality": args.missing_quality, "max_docs": args.max_docs,
                 "max_new_tokens": args.max_new_tokens, "prefill": args.prefill}
    return overrides | ({backend: sections[backend]} if backend else {})


def load_rephrase_config(path: str | None, args: argparse.Namespace | None = None):
    """The `rephrase:` section of a curate-style YAML with the command line's overrides, validated
    (errors name the file and the field)."""
    from flows.config.curate import CurateConfig
    from flows.errors import ConfigError
    from training.yaml_config import merge_overrides, read_yaml_mapping, validate_config

    data = read_yaml_mapping(path, ConfigError) if path is not None else {}
    if args is not None:
        data = merge_overrides(data, {"rephrase": rephrase_overrides(args, (data.get("rephrase") or {}).get("backend"))})
    config = validate_config(CurateConfig, data, path, ConfigError).rephrase
    config.require_backend()
    return config


def cmd_rephrase(args: argparse.Namespace) -> None:
    from curation.io.readers import expand_inputs
    from flows.engine.rephrase import run_rephrase_stage
    from flows.engine.stage_dir import STATS_FILE, fingerprint_files, read_stage_stats
    from flows.report.funnel import funnel_markdown

    config = load_rephrase_config(args.config, args)
    files = expand_inputs(args.input)
    inputs = [(path, "") for path in files]
    stats, _ = run_rephrase_stage(config, inputs, fingerprint_files(files), Path(args.output), strict=args.strict,
                                  batch_rows=args.batch_rows, progress=print)
    print(funnel_markdown([stats]))
    report = read_stage_stats(args.output)["rephrase"]
    print("\n| task | chunks | kept | drops |\n|---|---:|---:|---|")
    for task, counts in report["tasks"].items():
        drops = ", ".join(f"{r} {n}" for r, n in sorted(counts["dropped"].items(), key=lambda kv: -kv[1])) or "-"
        print(f"| {task} | {counts['chunks']:,} | {counts['kept']:,} | {drops} |")
    print(f"\nsynthetic rows: {args.output}  counts: {Path(args.output) / STATS_FILE}")
