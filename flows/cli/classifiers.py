"""`ccforge classifiers build-training-set | annotate | train | eval | score`."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from flows.errors import UserError

if TYPE_CHECKING:  # the command line imports torch and the backends only in the commands that need them
    from classifiers.annotate import AnnotateConfig

TRAIN_EXAMPLE = "examples/classifiers.yaml"
ANNOTATE_EXAMPLE = "examples/annotate.yaml"


def add_commands(subparsers: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], None]]:
    group = subparsers.add_parser("classifiers", help="quality classifiers: training set, LLM annotation, train, eval, score")
    commands = group.add_subparsers(dest="classifiers_command", required=True, metavar="SUBCOMMAND")

    build = commands.add_parser("build-training-set", help="labelled documents from named local sources")
    build.add_argument("config", nargs="?", help=f"YAML with a training_set section (see {TRAIN_EXAMPLE})")
    build.add_argument("--output", required=True, help="training set file (.parquet or .jsonl)")
    build.add_argument("--max-docs-per-source", type=int, help="documents sampled from each source")

    annotate = commands.add_parser(
        "annotate", help="0-5 educational-value scores from a language model (local or server): a training set",
        description="Score documents with a FineWeb-Edu-style prompt through the rephrase backends and write a "
                    "training set (text, label, score, split) for an embedding regression head. Resumable.")
    annotate.add_argument("config", help=f"YAML annotate config (see {ANNOTATE_EXAMPLE})")
    annotate.add_argument("--input", nargs="+", required=True, help="JSONL/Parquet files, directories or globs with id, text")
    annotate.add_argument("--output", required=True,
                          help="directory for chunks/, training_set.parquet and stats.json (rerun: finished chunks are kept)")
    annotate.add_argument("--max-docs", type=int, help="annotate the first N documents only")
    annotate.add_argument("--max-new-tokens", type=int, help="cap every answer (quick runs)")

    train = commands.add_parser("train", help="train the configured classifiers and evaluate them on held-out data")
    train.add_argument("config", help=f"YAML training config (see {TRAIN_EXAMPLE})")
    train.add_argument("--output-dir", help="where models, ensemble.json and eval.json go (overrides output_dir)")

    evaluate = commands.add_parser("eval", help="held-out precision/recall/F1/ROC-AUC and correlations")
    evaluate.add_argument("--model", nargs="+", required=True, metavar="[NAME=]PATH",
                          help="fastText .bin, classifier directory, or a `train` output directory (all its models)")
    evaluate.add_argument("--data", required=True, help="labelled set (.parquet/.jsonl: text, label[, split])")
    evaluate.add_argument("--split", default="test", choices=["test", "train", "all"])

    score = commands.add_parser("score", help="score JSONL/Parquet documents: scores, buckets, quality levels")
    score.add_argument("--model", nargs="+", required=True, metavar="[NAME=]PATH")
    score.add_argument("--input", nargs="+", required=True, help="JSONL/Parquet files, directories or globs with id, text")
    score.add_argument("--output", required=True, help="directory for shards, thresholds.json, quality.json, PNGs")
    score.add_argument("--thresholds", help="reuse the cuts of an earlier run's thresholds.json")
    score.add_argument("--batch-rows", type=int, default=1000)
    score.add_argument("--scheduler", help="address of an existing Dask scheduler (default: a LocalCluster)")
    score.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    return {"classifiers": cmd_classifiers}


def cmd_classifiers(args: argparse.Namespace) -> None:
    {"build-training-set": cmd_build_training_set, "annotate": cmd_annotate, "train": cmd_train, "eval": cmd_eval,
     "score": cmd_score}[args.classifiers_command](args)


def cmd_build_training_set(args: argparse.Namespace) -> None:
    import collections

    from classifiers.training_set import build_training_set, write_training_set
    from flows.config.classifiers import load_classifiers_config

    config = load_classifiers_config(args.config, **{"training_set.max_docs_per_source": args.max_docs_per_source})
    config = config.training_set
    table = build_training_set(config)
    write_training_set(table, args.output)
    counts = collections.Counter(zip(table["source"].to_pylist(), table["label"].to_pylist(), table["split"].to_pylist()))
    for (source, label, split), n in sorted(counts.items()):
        print(f"  {source:<20} {label}  {split:<5} {n:>6}")
    print(f"{table.num_rows} documents -> {args.output}")


def load_annotate_config(path: str | Path, **overrides: object) -> AnnotateConfig:
    """An annotate YAML (`classifiers.annotate.AnnotateConfig` one to one) with overrides, validated."""
    from classifiers.annotate import AnnotateConfig
    from flows.errors import ConfigError
    from training.yaml_config import load_config

    return load_config(AnnotateConfig, path, overrides, ConfigError)


def cmd_annotate(args: argparse.Namespace) -> None:
    from flows.engine.annotate import run_annotation

    config = load_annotate_config(args.config, max_docs=args.max_docs, max_new_tokens=args.max_new_tokens)
    run_annotation(config, args.input, args.output)
    print(f"training set: {Path(args.output) / 'training_set.parquet'}  counts: {Path(args.output) / 'stats.json'}")
    print("train a regression head on it: `ccforge classifiers train` with data: set to that file and a classifier "
          "of kind embedding")


def cmd_train(args: argparse.Namespace) -> None:
    from classifiers.train import train
    from flows.config.classifiers import load_classifiers_config

    config = load_classifiers_config(args.config, output_dir=args.output_dir)
    train(config)
    print(f"models and ensemble.json: {config.output_dir}")


def parse_models(items: list[str]) -> list:
    """`NAME=PATH` or `PATH`; a directory with ensemble.json stands for all its classifiers."""
    from classifiers.stage import ClassifierSpec
    from classifiers.train import ENSEMBLE_FILE, load_ensemble

    specs = []
    for item in items:
        name, _, path = item.rpartition("=") if "=" in item else ("", "", item)
        if not Path(path).exists():
            raise UserError(f"{path}: no such model file or directory")
        if (Path(path) / ENSEMBLE_FILE).is_file() and not name:
            specs.extend(load_ensemble(path))
            continue
        specs.append(ClassifierSpec(name=name or _name_from_path(path), path=path))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise UserError(f"two models share a name ({names}); name them with NAME=PATH")
    return specs


def _name_from_path(path: str) -> str:
    name = re.sub(r"[^a-z0-9_]+", "_", Path(path).name.removesuffix(".bin").lower()).strip("_")
    return name if re.match(r"^[a-z]", name) else f"clf_{name}"


def cmd_eval(args: argparse.Namespace) -> None:
    from classifiers.train import evaluate, format_eval
    from classifiers.training_set import read_labelled, split

    table = read_labelled(args.data)
    if args.split != "all":
        table = split(table, args.split)
    if table.num_rows == 0:
        raise UserError(f"{args.data}: no rows in split {args.split!r} (try --split all)")
    print(format_eval(evaluate(parse_models(args.model), table)))


def cmd_score(args: argparse.Namespace) -> None:
    from classifiers.stage import ClassifyConfig
    from curation.io.readers import expand_inputs
    from flows.engine.classify import QUALITY_FILE, run_classify_stage
    from flows.engine.cluster import dask_client
    from flows.engine.stage_dir import fingerprint_files

    config = ClassifyConfig(classifiers=tuple(parse_models(args.model)), thresholds=args.thresholds)
    files = expand_inputs(args.input)
    inputs = [(path, Path(path.split("://")[-1]).parent.name or "input") for path in files]
    with dask_client(args.scheduler, workers=args.workers) as client:
        stats, _ = run_classify_stage(client, config, inputs, fingerprint_files(files), Path(args.output),
                                      batch_rows=args.batch_rows)
    levels = json.loads((Path(args.output) / QUALITY_FILE).read_text())["levels"]
    total = max(sum(v["bytes"] for v in levels.values()), 1)
    print("| level | docs | bytes | % bytes |\n|---|---:|---:|---:|")
    for level, v in levels.items():
        print(f"| {level} | {v['docs']} | {v['bytes']} | {100 * v['bytes'] / total:.1f} |")
    print(f"{stats.docs_out} documents scored -> {args.output}")
