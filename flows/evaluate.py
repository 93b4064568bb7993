"""The `evaluate` Prefect flow: `ccforge eval` (lm-evaluation-harness, offline) on the model a
pipeline exported, with the curated documents training held out as a bits-per-byte set.

Training's `eval.holdout` keeps a share of the documents out of training by a hash of their id
(training.data.heldout); the same hash picks them here from the curated shards, so `held-out`
scores the model on text it never saw, of the same distribution.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from curation.schema import ID, TEXT
from flows.config.evaluation import EvaluationSection
from training.data.heldout import Holdout
from training.downstream_eval import RESULTS_NAME

HELD_OUT_SET = "held-out"


@task(name="held-out-documents", cache_policy=NO_CACHE)
def held_out_documents(curated: Path, fraction: float, output: Path) -> Path | None:
    """The curated documents whose id training held out, as one Parquet file (id, text); None when
    no document falls on that side. Read shard by shard: ids first, text only of the rows kept."""
    holdout = Holdout(fraction=fraction, held_out=True)
    tables = []
    for shard in sorted(curated.glob("part-*.parquet")):
        ids = pq.read_table(shard, columns=[ID])[ID].combine_chunks()
        held = holdout.is_held_out(ids, None)  # curated documents always have an id (DOCUMENT_SCHEMA)
        if held.any():
            tables.append(pq.read_table(shard, columns=[ID, TEXT]).filter(pa.array(held)))
    if not tables:
        return None
    output.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.concat_tables(tables), output)
    print(f"held-out documents: {sum(t.num_rows for t in tables):,} of the curated ones, {output}")
    return output


@flow(name="evaluate", log_prints=True, validate_parameters=False)
def evaluate_model(model_dir: str | Path, settings: EvaluationSection, *, curated: str | Path | None = None,
                   holdout: float | None = None) -> Path:
    """lm-eval on `model_dir`: the settings' tasks and text sets, plus `held-out` (the documents of
    `curated` that training held out) when `holdout` is given. Writes MODEL_DIR/lm-eval-results.json."""
    from training.downstream_eval import DownstreamEvalConfig, TextSet, format_results, run_downstream_eval  # lm-eval

    model_dir = Path(model_dir)
    text_sets = dict(settings.text_sets)
    if holdout and curated and HELD_OUT_SET not in text_sets:
        documents = held_out_documents(Path(curated), holdout, model_dir.parent / "eval" / "held-out.parquet")
        if documents:
            text_sets[HELD_OUT_SET] = str(documents)
    cfg = DownstreamEvalConfig(model_dir=model_dir, tasks=tuple(settings.tasks),
                               include_paths=tuple(Path(p) for p in settings.include_paths),
                               text_sets=tuple(TextSet.from_path(name, path) for name, path in text_sets.items()),
                               limit=settings.limit, batch_size=settings.batch_size)
    results = run_downstream_eval(cfg)
    output = model_dir / RESULTS_NAME
    output.write_text(json.dumps(results, indent=2))
    table = format_results(results)
    print(table)
    create_markdown_artifact(table, key="downstream-eval", description=f"lm-eval on {model_dir}")
    return output
