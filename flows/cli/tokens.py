"""`ccforge tokenizer train`, `ccforge tokenize` and `ccforge mix`: tokens and mixtures."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def add_commands(commands: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], None]]:
    tokenizer = commands.add_parser("tokenizer", help="train a byte-level BPE tokenizer")
    sub = tokenizer.add_subparsers(dest="tokenizer_command", required=True, metavar="SUBCOMMAND")
    train = sub.add_parser("train", help="train on curated Parquet / JSONL text; AutoTokenizer loads the result")
    train.add_argument("--input", nargs="+", required=True, help="files, directories or globs with a `text` column")
    train.add_argument("--vocab-size", type=int, required=True)
    train.add_argument("--output", required=True, help="directory for tokenizer.json and its configs")
    train.add_argument("--max-docs", type=int, help="train on at most this many documents")

    tokenize = commands.add_parser("tokenize", help="curated Parquet to token shards (on Dask)")
    tokenize.add_argument("--input", nargs="+", required=True, help="curated shards: files, directories or globs")
    tokenize.add_argument("--tokenizer", required=True, help="a local Hugging Face tokenizer directory")
    tokenize.add_argument("--output", required=True, help="directory for token shards, stats.json, _SUCCESS")
    tokenize.add_argument("--source", help="dataset name for rows without `source` (default: directory name)")
    tokenize.add_argument("--bos", action=argparse.BooleanOptionalAction, default=False, help="prepend BOS")
    tokenize.add_argument("--eos", action=argparse.BooleanOptionalAction, default=True, help="append EOS")
    tokenize.add_argument("--strict", action="store_true", help="stop at the first unreadable file")
    tokenize.add_argument("--scheduler", help="address of an existing Dask scheduler (default: a LocalCluster)")
    tokenize.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")

    mix = commands.add_parser("mix", help="check a mixture against its token shards and report tokens and epochs")
    mix.add_argument("config", help="mixture YAML (see examples/mixture.yaml)")
    mix.add_argument("--tokens", type=int, help="training budget in tokens (default: the phases' budgets)")
    mix.add_argument("--output", help="report directory (default: <config name>-report)")
    return {"tokenizer": cmd_tokenizer, "tokenize": cmd_tokenize, "mix": cmd_mix}


def cmd_tokenizer(args: argparse.Namespace) -> None:
    from curation.io.readers import iter_texts
    from curation.tokens import train_tokenizer

    tokenizer = train_tokenizer(iter_texts(args.input, args.max_docs), vocab_size=args.vocab_size, output_dir=args.output)
    print(f"tokenizer: {args.output} (vocab {tokenizer.vocab_size}, bos {tokenizer.bos_id}, eos {tokenizer.eos_id})")


def cmd_tokenize(args: argparse.Namespace) -> None:
    from curation.tokens import TokenizeConfig, load_tokenizer
    from flows.engine.cluster import dask_client
    from flows.engine.stage_dir import finished_stage
    from flows.engine.tokenize import resolve_token_inputs, run_tokenize, tokenize_run

    load_tokenizer(args.tokenizer)  # a bad directory fails here, in one line, before Dask starts
    config = TokenizeConfig(tokenizer=str(Path(args.tokenizer).resolve()), add_bos=args.bos, add_eos=args.eos)
    inputs = resolve_token_inputs(args.input, args.source)
    stats = finished_stage(tokenize_run(config, inputs, args.output, strict=args.strict))
    if stats is not None:
        print("tokenize: finished earlier, skipped")
    else:
        with dask_client(args.scheduler, workers=args.workers) as client:
            stats = run_tokenize(client, inputs, args.output, config, strict=args.strict, progress=print)
    print(f"{stats.docs:,} documents, {stats.tokens:,} tokens in {args.output} ({stats.seconds:.1f} s)")
    for group in stats.groups.to_list():
        print(f"  source={group['source']} quality_level={group['quality_level']} "
              f"synthetic_kind={group['synthetic_kind']}: {group['docs']:,} docs, {group['tokens']:,} tokens")


def cmd_mix(args: argparse.Namespace) -> None:
    from training.data import load_mixture, plan_mixture, write_mix_report

    from flows.errors import UserError

    plan = plan_mixture(load_mixture(args.config), args.tokens)
    if plan.total_tokens is None:
        raise UserError(f"{args.config}: the phases set no total budget; give --tokens N")
    output = Path(args.output or f"{Path(args.config).stem}-report")
    paths = write_mix_report(plan, output)
    print(paths["markdown"].read_text())
    print(f"report: {paths['markdown']}  {paths['json']}  {paths['chart']}")
