"""The rephrase stage as `ccforge rephrase` and the curate flow run it: plan, generate, finish.

Generation runs in this process (a local model on this machine's CPU or GPU, or requests to a
server); the plan and finish passes are cheap. Layout of the stage directory (beside the
files every stage directory has, `flows.engine.stage_dir`; its counts gain a `rephrase` section):

    OUT/_plan/part-NNNNN.parquet              units of work of input shard N
    OUT/_generations/part-NNNNN/b*.parquet    answers, one file per backend batch
    OUT/part-NNNNN.parquet (+ shard stats)    synthetic rows of shard N and their counts

Two keys: the generation key (inputs, routing, budgets, prompts, sampling, model) guards the
plan and the answers; the stage key adds post-processing. Changing only post-processing
re-finishes from the saved answers without generating anything again.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from curation.io.writers import write_json_atomic, write_table_atomic
from curation.shards import ShardTask
from curation.stage import StageStats
from curation.synthetic.backends import Backend, build_backend, token_counter_for
from curation.synthetic.chunking import TokenCounter
from curation.synthetic.config import RephraseConfig
from curation.synthetic.stage import RephraseReport, finish_shard, generate_shard, plan_shard, prompts_for
from flows.engine.stage_dir import StageRun, fingerprint_files, run_resumable, stage_key

#: Fields that change how fast answers come, not what they are: left out of the keys.
_EXECUTION_ONLY = {"local": ("device", "batch_size", "torch_threads"),
                   "http": ("endpoint", "api_key_env", "concurrency", "requests_per_second", "timeout_s", "max_retries",
                            "backoff_s", "max_backoff_s", "batch_size")}


def _model_files(config: RephraseConfig) -> list[str]:
    if config.backend == "local":
        dirs = {Path(config.local.model), Path(config.local.tokenizer or config.local.model)}
    else:
        dirs = {Path(config.http.tokenizer)} if config.http.tokenizer else set()
    return sorted(str(p) for d in dirs for p in d.rglob("*") if p.is_file())


def rephrase_keys(config: RephraseConfig, input_fingerprint: str, *, strict: bool) -> tuple[str, str]:
    """(generation key, stage key) of `config` over inputs with `input_fingerprint`."""
    material = dataclasses.asdict(config)
    postprocess = material.pop("postprocess")
    for section in ("local", "http"):
        if section != config.backend:
            material.pop(section)
            continue
        for name in _EXECUTION_ONLY[section]:
            material[section].pop(name)
    material["prompts"] = {task: dataclasses.asdict(p) for task, p in prompts_for(config).items()}
    material["model_files"] = fingerprint_files(_model_files(config))
    material["strict"] = strict
    generation = stage_key("rephrase-generation", material, input_fingerprint)
    return generation, stage_key("rephrase", {"generation": generation, "postprocess": postprocess}, input_fingerprint)


class _LazyBackend:
    """Builds the backend (loads the model) on first use only: a finished plan needs none."""

    def __init__(self, config: RephraseConfig) -> None:
        self.config = config
        self.backend: Backend | None = None

    def __call__(self) -> Backend:
        if self.backend is None:
            self.backend = build_backend(self.config)
        return self.backend

    def run_stats(self) -> dict:
        backend = self.backend
        if backend is None:
            return {}
        if backend.name == "http":
            return backend.stats.to_dict()
        seconds = max(backend.seconds, 1e-9)
        return {"prompt_tokens": backend.prompt_tokens, "generated_tokens": backend.generated_tokens,
                "model_seconds": round(backend.seconds, 3),
                "prompt_and_generated_tokens_per_s": round((backend.prompt_tokens + backend.generated_tokens) / seconds, 1),
                "generated_tokens_per_s": round(backend.generated_tokens / seconds, 1)}


def run_rephrase_stage(config: RephraseConfig, inputs: list[tuple[str, str]], input_fingerprint: str,
                       output_dir: Path, *, strict: bool = False, batch_rows: int = 1000,
                       progress: Callable[[str], None] = print) -> tuple[StageStats, str]:
    """Rephrase every input shard into `output_dir`; returns the stats and the stage key. Plans and
    answers made under the same generation key are kept (`files_key`); anything else is cleared."""
    config.require_backend()
    generation_key, key = rephrase_keys(config, input_fingerprint, strict=strict)
    run = StageRun(name="rephrase", inputs=inputs, output_dir=Path(output_dir), stage_key=key, files_key=generation_key,
                   strict=strict, batch_rows=batch_rows)
    sections: dict = {}
    stats = run_resumable(run, lambda: _rephrase(config, run, sections, progress), progress, sections=sections)
    return stats, key


def _rephrase(config: RephraseConfig, run: StageRun, sections: dict, progress: Callable[[str], None]) -> StageStats:
    """Plan, generate and finish every shard; the stage's `rephrase` report goes to `sections`."""
    started = time.perf_counter()
    counter = token_counter_for(config)
    backend = _LazyBackend(config)
    errors, sent = _plan_and_generate(config, run.inputs, run.output_dir, counter, backend, strict=run.strict,
                                      batch_rows=run.batch_rows, progress=progress)
    generate_seconds = time.perf_counter() - started
    total, report = _finish(config, run, counter)
    total.errors = errors
    this_run = {"chunks_sent": sent, "generate_seconds": round(generate_seconds, 3)} | backend.run_stats()
    sections["rephrase"] = report.to_dict() | {"this_run": this_run}
    speed = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in this_run.items() if k.endswith("_per_s"))
    progress(f"rephrase: {total.docs_out:,} synthetic rows from {report.rephrased:,} documents "
             f"({sent:,} chunks generated in this run, {generate_seconds:.1f} s{', ' + speed if speed else ''})")
    return total


def _shard_paths(output_dir: Path, index: int) -> tuple[Path, Path]:
    return output_dir / "_plan" / f"part-{index:05d}.parquet", output_dir / "_generations" / f"part-{index:05d}"


def _plan_and_generate(config: RephraseConfig, inputs: list[tuple[str, str]], output_dir: Path,
                       counter: TokenCounter, backend: _LazyBackend, *, strict: bool, batch_rows: int,
                       progress: Callable[[str], None]) -> tuple[list[str], int]:
    """Passes 1 and 2, shard after shard: (file errors, chunks sent in this run)."""
    prompts = prompts_for(config)
    remaining, errors, sent = config.max_docs, [], 0
    try:
        for i, (path, _) in enumerate(inputs):
            plan_path, answers_dir = _shard_paths(output_dir, i)
            info = plan_shard(path, plan_path, config, counter, max_docs=remaining, batch_rows=batch_rows, strict=strict)
            errors += info.errors
            remaining = None if remaining is None else remaining - info.rephrased
            sent += generate_shard(plan_path, answers_dir, config, backend, prompts, progress)
    finally:
        if backend.backend is not None:
            backend.backend.close()
    return errors, sent


def _finish(config: RephraseConfig, run: StageRun, counter: TokenCounter) -> tuple[StageStats, RephraseReport]:
    """Pass 3 in shard order (exact dedup keeps the first copy across shards)."""
    prompts = prompts_for(config)
    total, report, seen = StageStats(name="rephrase"), RephraseReport(), set()
    for i, (path, source) in enumerate(run.inputs):
        shard = ShardTask(stage_key=run.stage_key, input_path=path, source=source, output_dir=str(run.output_dir),
                          index=i)
        rows, stats, shard_report = finish_shard(path, *_shard_paths(run.output_dir, i), config, prompts, counter,
                                                 seen, exact_counts=counter.name != "approx")
        write_table_atomic(rows, shard.output_path)
        write_json_atomic({"stage_key": run.stage_key, "stats": stats.to_dict(), "rephrase": shard_report.to_dict()},
                          shard.stats_path)
        total, report = total + stats, report + shard_report
    return total, report


#: The quick start rephrases this many documents with the demo model, `QUICKSTART_NEW_TOKENS` each.
QUICKSTART_DOCS = 24
QUICKSTART_NEW_TOKENS = 48


def quickstart_rephrase(classifiers_dir: Path, model_dir: Path) -> dict:
    """Build the demo model on the classifier training set's reference documents and return the
    `rephrase:` section that runs it: a sample of documents, short answers, assistant prefill."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import torch

    from flows.demo.demo_model import build_demo_model

    labelled = pq.read_table(Path(classifiers_dir) / "training_set.parquet", columns=["text", "label"])
    texts = [t[:8000] for t in labelled.filter(pc.equal(labelled["label"], "hq"))["text"].to_pylist()[:200]]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small only loses from more threads
    try:
        build_demo_model(texts, model_dir, train_steps=60)
    finally:
        torch.set_num_threads(threads)
    return {"backend": "local", "local": {"model": str(model_dir), "batch_size": 16, "torch_threads": 1},
            "prefill": True, "max_docs": QUICKSTART_DOCS, "max_new_tokens": QUICKSTART_NEW_TOKENS,
            # answers of 48 tokens: none reaches the recipe's 50, and every one is cut by the cap
            "postprocess": {"drop_truncated": False, "min_output_tokens": 8}}
