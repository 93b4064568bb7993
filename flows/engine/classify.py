"""The classify stage on Dask: score every shard, byte-weighted percentile cuts, buckets.

Three passes joined by files, like exact dedup:

1. score: each input shard -> `_scores/part-NNNNN.parquet` (`score_<clf>` float32, `n_bytes`);
2. thresholds: per-shard `ScoreSummary`s reduced on the cluster to 19 cuts per classifier,
   saved as `thresholds.json` (or the cuts of `config.thresholds` are reused);
3. buckets: each input shard again, joined row by row with its scores -> `part-NNNNN.parquet`
   with `score_<clf>`, `bucket_<clf>`, `quality_bucket`, `quality_level`.

Then `quality.json` (documents and bytes per level and per bucket) and one PNG histogram per
classifier and for the ensemble. Nothing is dropped.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from distributed import Client

from classifiers.ensemble import (
    LEVELS, add_quality_columns, assign_buckets, ensemble_bucket, quality_levels, score_column,
)
from classifiers.fingerprint import model_fingerprint
from classifiers.stage import ClassifyConfig, score_texts
from classifiers.thresholds import (
    NUM_BUCKETS, ClassifierThresholds, ScoreSummary, check_thresholds_match, load_thresholds, merge_summaries,
    save_thresholds,
)
from curation.io.readers import readable_batches
from curation.io.writers import write_json_atomic, write_table_atomic
from curation.stage import StageResult, StageStats, split_by_reason
from flows.engine.cluster import gather_per_input, map_shards, run_cluster_stage
from flows.engine.stage_dir import SHARD_FILES, StageRun, shard_keys, stage_key

log = logging.getLogger("ccforge")

N_BYTES = "n_bytes"
SCORES_DIR = "_scores"
THRESHOLDS_FILE = "thresholds.json"
QUALITY_FILE = "quality.json"
_FAN_IN = 8  # summaries merged per reduction task


def classify_stage_key(config: ClassifyConfig, input_fingerprint: str, **options: object) -> str:
    """Config, inputs and the *contents* of every model and of a reused thresholds file."""
    config.require_classifiers()
    material = {"config": dataclasses.asdict(config), "options": options,
                "models": {s.name: model_fingerprint(s.path) for s in config.classifiers},
                "thresholds": model_fingerprint(config.thresholds) if config.thresholds else None}
    return stage_key("classify", material, input_fingerprint)


def run_classify_stage(client: Client, config: ClassifyConfig, inputs: list[tuple[str, str]],
                       input_fingerprint: str, output_dir: Path, *, keep_rejects: bool = False,
                       strict: bool = False, batch_rows: int = 1000,
                       progress: Callable[[str], None] = print) -> tuple[StageStats, str]:
    """The classify stage as the curate flow calls it; returns its stats and stage key."""
    key = classify_stage_key(config, input_fingerprint, keep_rejects=keep_rejects, strict=strict)
    run = StageRun(name="classify", inputs=inputs, output_dir=Path(output_dir), stage_key=key,
                   config_key=classify_stage_key(config, "", keep_rejects=keep_rejects, strict=strict),
                   keep_rejects=keep_rejects, strict=strict, batch_rows=batch_rows)
    return run_classify(client, run, config, progress), key


def run_classify(client: Client, run: StageRun, config: ClassifyConfig,
                 progress: Callable[[str], None] = log.info) -> StageStats:
    """Score every shard, compute (or reuse) the percentile cuts, write bucketed shards."""
    config.require_classifiers()
    # Scores are named by their shard's key: a rerun over more inputs scores only the new shards.
    return run_cluster_stage(run, lambda: _classify_passes(client, run, config, progress), progress,
                             keep=(*SHARD_FILES, SCORES_DIR))


def _classify_passes(client: Client, run: StageRun, config: ClassifyConfig,
                     progress: Callable[[str], None]) -> StageStats:
    count = len(run.inputs)
    scores_dir = run.output_dir / SCORES_DIR
    score_paths = [str(scores_dir / f"part-{i:05d}-{key[:16]}.parquet") for i, key in enumerate(shard_keys(run))]
    for stale in set(map(str, scores_dir.glob("part-*.parquet"))) - set(score_paths):
        Path(stale).unlink()
    to_score = [(path, out) for (path, _), out in zip(run.inputs, score_paths) if not Path(out).exists()]
    gather_per_input(client, dataclasses.replace(run, inputs=[(path, "") for path, _ in to_score]), _score_shard,
                     [out for _, out in to_score], [config] * len(to_score), [run.batch_rows] * len(to_score))
    progress(f"{run.name}: scored {len(to_score)} shards ({count - len(to_score)} scored earlier) "
             f"with {', '.join(s.name for s in config.classifiers)}")
    thresholds = _thresholds(client, config, score_paths, run.output_dir / THRESHOLDS_FILE)
    progress(f"{run.name}: thresholds in {run.output_dir / THRESHOLDS_FILE}")
    makers = [functools.partial(ScoredShard, run.name, path, thresholds) for path in score_paths]
    cuts = json.dumps({name: list(t.cuts) for name, t in sorted(thresholds.items())})
    stats = map_shards(client, run, makers, progress, [cuts] * count)
    write_quality_report(client, score_paths, thresholds, run.output_dir)
    return stats


# ------------------------------------------------------------------------------ pass 1: score


def _score_shard(input_path: str, out_path: str, config: ClassifyConfig, batch_rows: int) -> str:
    """Scores of every readable row, in reading order (pass 3 reads the same rows again)."""
    if Path(out_path).exists():
        return out_path
    tables = []
    for raw in readable_batches(input_path, batch_rows=batch_rows):  # pass 3 reports a bad file (or stops, if strict)
        scores = score_texts(config, raw.table["text"].to_pylist())
        columns = {score_column(n): pa.array(v, pa.float32()) for n, v in scores.items()}
        tables.append(pa.table(columns | {N_BYTES: pc.binary_length(raw.table["text"]).cast(pa.int64())}))
    schema = pa.schema([(score_column(s.name), pa.float32()) for s in config.classifiers] + [(N_BYTES, pa.int64())])
    write_table_atomic(pa.concat_tables(tables) if tables else schema.empty_table(), out_path)
    return out_path


# ------------------------------------------------------------------------- pass 2: thresholds


def _summarize_shard(path: str, name: str, max_points: int) -> ScoreSummary:
    table = pq.read_table(path, columns=[score_column(name), N_BYTES])
    return ScoreSummary.of(table[score_column(name)].to_numpy(), table[N_BYTES].to_numpy(), max_points)


def reduce_summaries(client: Client, score_paths: list[str], name: str, max_points: int) -> ScoreSummary:
    """Summaries of every shard merged in a tree of `_FAN_IN`-way merges on the cluster."""
    futures = client.map(_summarize_shard, score_paths, [name] * len(score_paths),
                         [max_points] * len(score_paths), pure=False)
    while len(futures) > 1:
        futures = [client.submit(merge_summaries, *futures[i:i + _FAN_IN], max_points=max_points, pure=False)
                   for i in range(0, len(futures), _FAN_IN)]
    return futures[0].result()


def _thresholds(client: Client, config: ClassifyConfig, score_paths: list[str],
                out_path: Path) -> dict[str, ClassifierThresholds]:
    fingerprints = {s.name: model_fingerprint(s.path) for s in config.classifiers}
    if config.thresholds:
        thresholds = load_thresholds(config.thresholds)
        check_thresholds_match(thresholds, fingerprints, config.thresholds)
        thresholds = {name: thresholds[name] for name in fingerprints}
    elif out_path.exists():  # computed by an interrupted run of this same stage key
        return load_thresholds(out_path)
    else:
        thresholds = {s.name: ClassifierThresholds.from_summary(
            s.name, s.resolved_kind(), fingerprints[s.name],
            reduce_summaries(client, score_paths, s.name, config.summary_points)) for s in config.classifiers}
    save_thresholds(thresholds, out_path, corpus=str(out_path.parent))
    return thresholds


# ---------------------------------------------------------------------------- pass 3: buckets


class ScoredShard:
    """Adds the quality columns to consecutive batches of one shard from its pass-1 scores."""

    def __init__(self, name: str, scores_path: str, thresholds: dict[str, ClassifierThresholds]) -> None:
        self.name = name
        self.scores = pq.read_table(scores_path)
        self.thresholds = thresholds
        self._next_row = 0

    def run(self, table: pa.Table) -> StageResult:
        rows = self.scores.slice(self._next_row, table.num_rows)
        if rows.num_rows != table.num_rows:
            raise RuntimeError(f"{self.name}: shard has more rows than were scored ({self._next_row + table.num_rows})")
        self._next_row += table.num_rows
        scores = {name: rows[score_column(name)].to_numpy() for name in self.thresholds}
        return split_by_reason(add_quality_columns(table, scores, self.thresholds), [None] * table.num_rows)


# ----------------------------------------------------------------------------------- report


def _quality_counts(path: str, thresholds: dict[str, ClassifierThresholds]) -> dict[str, np.ndarray]:
    """[2, 20] docs/bytes per bucket, for every classifier and for the ensemble."""
    table = pq.read_table(path)
    n_bytes = table[N_BYTES].to_numpy().astype(np.float64)
    buckets = {name: assign_buckets(table[score_column(name)].to_numpy(), t.cuts) for name, t in thresholds.items()}
    buckets["ensemble"] = ensemble_bucket(list(buckets.values())) if table.num_rows else np.zeros(0, np.int8)
    return {name: np.stack([np.bincount(b, minlength=NUM_BUCKETS), np.bincount(b, weights=n_bytes, minlength=NUM_BUCKETS)])
            for name, b in buckets.items()}


def _add_counts(*parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: sum(p[name] for p in parts) for name in parts[0]}


def write_quality_report(client: Client, score_paths: list[str], thresholds: dict[str, ClassifierThresholds],
                         out_dir: Path) -> dict:
    """`quality.json` (docs and bytes per level and per bucket) and `buckets_<clf>.png`."""
    counts = client.submit(_add_counts, *client.map(_quality_counts, score_paths, [thresholds] * len(score_paths),
                                                    pure=False)).result()
    ensemble = counts["ensemble"]
    levels = quality_levels(np.arange(NUM_BUCKETS))
    report = {
        "levels": {lv: {"docs": int(ensemble[0][levels == lv].sum()), "bytes": int(ensemble[1][levels == lv].sum())}
                   for lv in LEVELS},
        "buckets": {name: {"docs": c[0].astype(int).tolist(), "bytes": c[1].astype(int).tolist()}
                    for name, c in counts.items()},
    }
    write_json_atomic(report, out_dir / QUALITY_FILE)
    for name, c in counts.items():
        plot_buckets(c[1], name, out_dir / f"buckets_{name}.png")
    return report


def plot_buckets(bytes_per_bucket: np.ndarray, name: str, path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global state, safe off the main thread

    total = max(float(bytes_per_bucket.sum()), 1.0)
    figure = Figure(figsize=(7, 3.2))
    axes = figure.add_subplot()
    axes.bar(np.arange(NUM_BUCKETS), 100 * bytes_per_bucket / total, color="#4c72b0")
    axes.axhline(100 / NUM_BUCKETS, color="gray", linestyle="--", linewidth=1)
    axes.set(xlabel="bucket", ylabel="% of bytes", title=f"{name}: bytes per quality bucket",
             xticks=range(NUM_BUCKETS))
    figure.tight_layout()
    figure.savefig(path, dpi=100)
