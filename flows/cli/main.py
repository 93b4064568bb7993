"""The `ccforge` command line. Every command exits non-zero with a one-line reason on bad input."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from flows.errors import ConfigError, StageFailed, TrainingFailed, UserError, WorkdirBusy
from flows.server import ServerFailed

if TYPE_CHECKING:  # the CLI imports torch only in the commands that need it
    from training.model.config import HybridConfig
    from training.model.memory_plan import PlanSetup

log = logging.getLogger("ccforge")


def _add_dask_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scheduler", help="address of an existing Dask scheduler (tcp://host:8786); "
                        "default: $DASK_SCHEDULER_ADDRESS, else a LocalCluster")
    parser.add_argument("--workers", type=int, help="LocalCluster worker processes (default 2; threads of one "
                        "process for fuzzy-dedup alone)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ccforge", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    quick = commands.add_parser("quickstart", help="the whole pipeline on a sample crawl: curate, tokenize, mix, pretrain, "
                                "export, report")
    quick.add_argument("--workdir", default="quickstart-work", help="where everything is written")
    quick.add_argument("--max-records", type=int, default=6000, help="sample crawl size (pages)")
    _add_dask_args(quick)

    sample = commands.add_parser("sample-corpus", help="write Common-Crawl-like WARC files from local docs")
    sample.add_argument("out_dir")
    sample.add_argument("--max-records", type=int, default=6000)
    sample.add_argument("--num-files", type=int, default=8)
    sample.add_argument("--seed", type=int, default=0)

    curate = commands.add_parser("curate", help="run the curation flow (Prefect + Dask)")
    curate.add_argument("config", nargs="?", help="YAML config (see examples/curate.yaml)")
    curate.add_argument("--input", nargs="+", help="input files, directories or globs (fsspec URLs)")
    curate.add_argument("--source", help="dataset name for --input (default: directory name)")
    curate.add_argument("--workdir", help="output directory (default from config: work)")
    curate.add_argument("--stages", help="comma-separated subset, e.g. extract,langid")
    curate.add_argument("--strict", action="store_true", default=None, help="stop at the first bad file")
    _add_dask_args(curate)

    stage = commands.add_parser("stage", help="run one curation stage alone (no Prefect)")
    stage.add_argument("name", help="extract, langid, exact-dedup, fuzzy-dedup, substring-dedup or heuristics")
    stage.add_argument("--input", nargs="+", required=True)
    stage.add_argument("--output", required=True, help="directory for shards, stats.json, _SUCCESS")
    stage.add_argument("--config", help="curate YAML whose section for this stage is used")
    fuzzy = stage.add_argument_group("fuzzy-dedup (override the config's fuzzy_dedup section)")
    fuzzy.add_argument("--threshold", type=float, help="exact-Jaccard cut of verified pairs (default 0.8)")
    fuzzy.add_argument("--bands", type=int, help="LSH bands (default 20)")
    fuzzy.add_argument("--rows", type=int, help="rows (permutations) per band (default 13)")
    fuzzy.add_argument("--shingle", help="char:N or word:N (default char:24)")
    fuzzy.add_argument("--no-verify", dest="verify", action="store_false", default=None,
                       help="keep every LSH candidate pair without computing its Jaccard")
    substring = stage.add_argument_group("substring-dedup (override the config's substring_dedup section)")
    substring.add_argument("--tokenizer", help="tokenizer.json (or a directory with one): windows of --min-tokens tokens")
    substring.add_argument("--min-tokens", type=int, help="window length in tokens (default 50, Lee et al.)")
    substring.add_argument("--min-bytes", type=int, help="window length in UTF-8 bytes, without a tokenizer")
    substring.add_argument("--keep-first", action="store_true", default=None,
                           help="keep the first copy of each repeated span (default: cut every copy)")
    substring.add_argument("--min-doc-chars", type=int, help="drop a cut document left shorter than this (default 50)")
    _add_dask_args(stage)

    model = commands.add_parser("model", help="model presets")
    model_commands = model.add_subparsers(dest="model_command", required=True, metavar="SUBCOMMAND")
    info = model_commands.add_parser("info", help="total and active parameters of a preset")
    info.add_argument("preset")
    _add_plan_parser(model_commands)
    for module in COMMAND_MODULES:
        COMMANDS.update(importlib.import_module(module).add_commands(commands))
    return parser


def _add_plan_parser(model_commands: argparse._SubParsersAction) -> None:
    plan = model_commands.add_parser(
        "plan", help="per-GPU memory of a training step (parameters, gradients, AdamW, activations) and whether it fits")
    plan.add_argument("config", help="a preset name (ccforge model info) or a train YAML")
    plan.add_argument("--gpus", type=int, required=True, help="ranks of the run (world size)")
    plan.add_argument("--gpu-memory", required=True, help="memory of one GPU, e.g. 80GiB or 94GB")
    plan.add_argument("--seq-len", type=int, help="tokens per sequence (default: the YAML's mixture seq_len; "
                      "8192 for a preset); for a long-context mixture phase give its seq_len")
    plan.add_argument("--micro-batch", type=int, help="sequences per rank per forward/backward "
                      "(default: the YAML's batch.micro_batch_size; 1 for a preset)")
    plan.add_argument("--grad-accum", type=int, help="micro-batches per optimizer step "
                      "(default: from the YAML's batch.global_batch_tokens; 1 for a preset)")
    plan.add_argument("--expert-parallel", type=int, help="ranks the routed experts are split over "
                      "(default: the YAML's parallel.expert_parallel, else 1)")
    plan.add_argument("--precision", choices=["bf16", "fp8", "nvfp4"], help="GEMM format (default: the YAML's "
                      "precision.recipe; bf16 for a preset)")
    plan.add_argument("--ssd-scan", choices=["mamba_ssm", "torch"], default="mamba_ssm",
                      help="Mamba-2 scan: mamba_ssm's CUDA kernel (default) or the pure-PyTorch one (CPU, or CUDA "
                      "without mamba_ssm)")


def _curate_overrides(args: argparse.Namespace) -> dict:
    overrides: dict = {"workdir": args.workdir, "strict": args.strict}
    if args.input:
        overrides["inputs"] = [{"path": p, "source": args.source} for p in args.input]
    if args.stages:
        overrides["stages"] = [s.strip() for s in args.stages.split(",") if s.strip()]
    dask = {k: v for k, v in (("scheduler", args.scheduler), ("workers", args.workers)) if v is not None}
    return overrides | ({"dask": dask} if dask else {})


def cmd_curate(args: argparse.Namespace) -> None:
    from flows.config.curate import load_curate_config
    from flows.curate import curate
    from flows.engine.stages import resolve_inputs
    from flows.server import command_api

    config = load_curate_config(args.config, **_curate_overrides(args))
    resolve_inputs(config)  # a bad config or a missing input fails here, before any server or cluster starts
    with command_api():
        curate(config)
    print(f"curated shards: {Path(config.workdir) / 'curated'}  report: {Path(config.workdir) / 'report.md'}")


def cmd_stage(args: argparse.Namespace) -> None:
    from flows.config.curate import CURATION_STAGES, load_curate_config
    from flows.engine.stages import THREADED_STAGES, resolve_inputs, run_stage
    from flows.engine.cluster import dask_client
    from flows.engine.stage_dir import fingerprint_files
    from flows.report.funnel import funnel_markdown

    if args.name not in CURATION_STAGES:
        raise UserError(f"unknown stage {args.name!r}; choose from {', '.join(CURATION_STAGES)}")
    fuzzy_flags = _stage_flags(args, "fuzzy-dedup", ("threshold", "bands", "rows", "shingle", "verify"))
    substring_flags = _stage_flags(args, "substring-dedup",
                                   ("tokenizer", "min_tokens", "min_bytes", "keep_first", "min_doc_chars"))
    config = load_curate_config(args.config, inputs=[{"path": p} for p in args.input],
                                fuzzy_dedup=fuzzy_flags or None, substring_dedup=substring_flags or None)
    if args.name == "substring-dedup" and config.substring_dedup is None:
        raise UserError("substring-dedup needs a unit: --tokenizer PATH or --min-bytes N "
                        "(or a substring_dedup section in --config)")
    inputs = resolve_inputs(config)
    with dask_client(args.scheduler or config.dask.scheduler, workers=args.workers or config.dask.workers,
                     processes=args.name not in THREADED_STAGES) as client:
        stats, _ = run_stage(client, args.name, config, inputs, fingerprint_files([p for p, _ in inputs]),
                             Path(args.output))
    print(funnel_markdown([stats]))


def _stage_flags(args: argparse.Namespace, stage: str, names: tuple[str, ...]) -> dict:
    """The options of one stage's group that were given; an error when they name another stage."""
    flags = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if flags and args.name != stage:
        raise UserError(f"options {sorted(flags)} apply to the {stage} stage only")
    return flags


def cmd_sample_corpus(args: argparse.Namespace) -> None:
    from flows.demo.sample_crawl import build_sample_corpus

    report = build_sample_corpus(args.out_dir, max_records=args.max_records, num_files=args.num_files,
                                 seed=args.seed)
    print(report.summary())


#: The quick start's training tail: the tiny preset for 60 steps of 4,096 tokens (about a
#: minute on 2 CPU cores), enough to see the loss fall; the tokenizer is trained on the curated text.
#: A tenth of every mixture component's documents is held out, and 8 windows of each are evaluated
#: every 20 steps: a few seconds in all.
QUICKSTART_TRAINING = {"vocab_size": 4096, "seq_len": 256, "train": {
    "model": {"preset": "tiny"}, "batch": {"global_batch_tokens": 4096, "micro_batch_size": 8},
    "schedule": {"warmup_steps": 6}, "max_steps": 60, "checkpoint": {"every_steps": 20, "keep_last": 2},
    "logging": {"progress_bar": False}, "eval": {"holdout": 0.1, "every_steps": 20, "windows": 8, "batch_size": 8}}}


#: The quick start cuts repeated spans of 200 bytes (about 50 GPT-2 tokens of English): its
#: tokenizer is trained on the curated text, after curation.
QUICKSTART_SUBSTRING_DEDUP = {"min_bytes": 200}


def cmd_quickstart(args: argparse.Namespace) -> None:
    from classifiers.stage import ClassifyConfig
    from classifiers.train import quickstart_train_config, save_ensemble, train
    from flows.demo.sample_crawl import build_sample_corpus
    from flows.engine.annotate import quickstart_annotated_classifier
    from flows.config.curate import load_curate_config
    from flows.pipeline import TrainingSettings, pipeline
    from flows.engine.rephrase import quickstart_rephrase
    from flows.server import command_api

    started = time.perf_counter()
    workdir = Path(args.workdir)
    crawl_dir = workdir / "crawl"
    report = build_sample_corpus(crawl_dir, max_records=args.max_records)
    print(report.summary())
    print("\ntraining the quality classifiers on local reference documentation vs licence/changelog text ...")
    specs = train(quickstart_train_config(workdir / "classifiers"))
    print("\nthe third classifier: 0-5 scores from an annotator (here the stub OpenAI-compatible server, so the "
          "scores are noise: a hash of each prompt) and a regression head trained on them ...")
    specs.append(quickstart_annotated_classifier(workdir / "classifiers", workdir))
    save_ensemble(specs, workdir / "classifiers")
    print("\nbuilding a tiny demo language model for the rephrase stage (it proves the plumbing; "
          "its text carries no meaning) ...")
    rephrase = quickstart_rephrase(workdir / "classifiers", workdir / "rephrase-model")
    config = load_curate_config(None, inputs=[{"path": str(crawl_dir), "source": "sample-crawl"}],
                                workdir=str(workdir / "curation"), classify=ClassifyConfig(classifiers=tuple(specs)),
                                rephrase=rephrase, substring_dedup=QUICKSTART_SUBSTRING_DEDUP,
                                dask={k: v for k, v in (("scheduler", args.scheduler),
                                                        ("workers", args.workers)) if v is not None})
    with command_api():
        result = pipeline(config, workdir, TrainingSettings(**QUICKSTART_TRAINING))
    training = result.training
    print(f"\nquickstart finished in {time.perf_counter() - started:.0f} s")
    print(f"  sample crawl (WARC):   {crawl_dir}")
    print(f"  quality classifiers:   {workdir / 'classifiers'}  ({', '.join(s.name for s in specs)})")
    print(f"  annotated set:         {workdir / 'annotate'}  (edu_llm's scores: the stub server's, noise)")
    print(f"  curated Parquet:       {workdir / 'curation' / 'curated'}")
    print(f"  synthetic (rephrase):  {workdir / 'curation' / 'rephrase'}  (demo model: {workdir / 'rephrase-model'})")
    print(f"  funnel and languages:  {workdir / 'curation' / 'report.md'}")
    print(f"  per-stage counts:      {workdir / 'curation' / 'stats.json'}")
    print(f"  tokens and mixture:    {result.mixture.tokens_dir}  {result.mixture.mixture}  {result.mixture.report}")
    print(f"  training run:          {training.run_dir}  ({training.steps} steps, {training.tokens:,} tokens, "
          f"loss {training.first_loss:.3f} -> {training.final_loss:.3f})")
    print(f"  Hugging Face model:    {training.hf_dir}  (AutoModelForCausalLM.from_pretrained)")
    print(f"  run report:            {result.report}  ({result.report.with_suffix('.md')})")


def cmd_model(args: argparse.Namespace) -> None:
    from training.model import format_model_info

    if args.model_command == "plan":
        _plan_model(args)
        return
    try:
        print(format_model_info(args.preset))
    except KeyError as err:
        raise UserError(str(err).strip("'\"")) from err


_SIZE_UNITS = {"MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "MB": 10**6, "GB": 10**9, "TB": 10**12}


def parse_memory_size(text: str) -> int:
    """Bytes of a size such as 80GiB, 94GB or 141.5 GiB."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([MGT]i?B)\s*", text)
    if not match or match[2] not in _SIZE_UNITS:
        raise UserError(f"--gpu-memory {text!r}: give a number and a unit, one of {', '.join(_SIZE_UNITS)} (e.g. 80GiB)")
    return int(float(match[1]) * _SIZE_UNITS[match[2]])


def _plan_model(args: argparse.Namespace) -> None:
    from training.model import get_preset
    from training.model.info import format_memory_plan
    from training.model.memory_plan import PlanSetup, plan_memory

    gpu_memory = parse_memory_size(args.gpu_memory)
    if args.config.endswith((".yaml", ".yml", ".json")):
        name, model_cfg, setup = _plan_setup_from_yaml(args)
    else:
        name, model_cfg = args.config, get_preset(args.config)
        setup = PlanSetup(world_size=args.gpus, seq_len=args.seq_len or 8192, micro_batch=args.micro_batch or 1,
                          grad_accum=args.grad_accum or 1, expert_parallel=args.expert_parallel or 1,
                          precision=args.precision or "bf16", ssd_scan=args.ssd_scan)
    print(format_memory_plan(name, model_cfg, setup, plan_memory(model_cfg, setup), gpu_memory))


def _plan_setup_from_yaml(args: argparse.Namespace) -> tuple[str, HybridConfig, PlanSetup]:
    """(name, model config, PlanSetup) of a train YAML, the command line's options overriding it."""
    from training.data.mixture import load_mixture
    from training.model.memory_plan import PlanSetup
    from training.trainer.config import grad_accum_steps, load_train_config

    cfg = load_train_config(args.config, {"batch.micro_batch_size": args.micro_batch,
                                          "precision.recipe": args.precision})
    seq_len = args.seq_len or load_mixture(cfg.data.mixture).seq_len
    setup = PlanSetup(world_size=args.gpus, seq_len=seq_len, micro_batch=cfg.batch.micro_batch_size,
                      grad_accum=args.grad_accum or grad_accum_steps(cfg, seq_len=seq_len, world_size=args.gpus),
                      expert_parallel=args.expert_parallel or cfg.parallel.expert_parallel,
                      param_dtype=cfg.parallel.param_dtype, reduce_dtype=cfg.parallel.reduce_dtype,
                      precision=cfg.precision.recipe, ssd_scan=args.ssd_scan)
    return f"{args.config} ({cfg.model.init_from or cfg.model.preset})", cfg.model.hybrid_config(), setup


COMMANDS = {"quickstart": cmd_quickstart, "sample-corpus": cmd_sample_corpus, "curate": cmd_curate,
            "stage": cmd_stage, "model": cmd_model}
# Command groups in their own modules: each has `add_commands(subparsers) -> {name: handler}`.
COMMAND_MODULES: list[str] = ["flows.cli.tokens", "flows.cli.classifiers", "flows.cli.train", "flows.cli.ablate",
                              "flows.cli.rephrase", "flows.cli.report", "flows.cli.schedule", "flows.cli.server",
                              "flows.cli.evaluate"]


def main(argv: list[str] | None = None) -> int:
    # Dask's cluster lifecycle chatter (workers joining, leaving) is noise in a CLI run; set before
    # Dask is first imported, and inherited by the worker processes.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    args = build_parser().parse_args(argv)
    # Our own progress at INFO; libraries (httpx, distributed) only when something is wrong.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for name in ("ccforge", "curation", "flows", "training"):
        logging.getLogger(name).setLevel(logging.INFO)
    from curation.io.readers import InputFileError

    explained = (UserError, ConfigError, InputFileError, WorkdirBusy, StageFailed, TrainingFailed)
    for name in _PREFECT_RUN_LOGGERS:
        logging.getLogger(name).addFilter(_DropTraceback(explained))
    try:
        COMMANDS[args.command](args)
    except (UserError, ConfigError, InputFileError, FileNotFoundError, WorkdirBusy) as err:
        print(f"ccforge {args.command}: error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:
        print(f"ccforge {args.command}: error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    except (StageFailed, TrainingFailed, ServerFailed) as err:
        print(f"ccforge {args.command}: {err}", file=sys.stderr)
        return 1
    return 0


#: Prefect's run loggers, which log a failed run's traceback before the exception reaches main().
_PREFECT_RUN_LOGGERS = ("prefect.task_runs", "prefect.flow_runs", "prefect.engine", "prefect.flow_engine",
                        "prefect.task_engine")


class _DropTraceback(logging.Filter):
    """Keep Prefect's line about a failed run but not the traceback of an error that main() explains
    in one line anyway (a bad input, config or stage): the reason stays the last thing printed."""

    def __init__(self, explained: tuple[type[BaseException], ...]) -> None:
        super().__init__()
        self.explained = explained

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], self.explained):
            record.exc_info, record.exc_text = None, None
        return True

