"""The rephrase stage over one input shard, in three passes joined by files.

    OUT/_plan/part-NNNNN.parquet          1. plan: every unit of work, in input order
    OUT/_generations/part-NNNNN/bNNNNNN.parquet   2. answers, one file per backend batch
    OUT/part-NNNNN.parquet (+ .stats.json)         3. finish: post-processed, deduplicated rows

A unit is one chunk of one document for one task (`id` = hash of parent id, task, chunk
index), or a document that yields no chunk at all (empty, or no task takes its quality level),
so `docs_in` of the stage counts units and every one of them is kept or dropped with a reason.
Answers are written atomically as soon as the backend returns a batch; a rerun lists the ids
already answered and sends only the others, so a crash loses at most the batch in flight and
no chunk is ever answered twice.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from classifiers.ensemble import LEVEL_FLOORS
from curation.exact_dedup import ExactDedupConfig, text_hashes
from curation.io.readers import InputFileError, read_batches
from curation.io.writers import ShardWriter, write_table_atomic
from curation.schema import (
    CHUNK_INDEX, DROP_REASON, ID, LANGUAGE, LANGUAGE_SCORE, N_TOKENS, PARENT_ID, QUALITY_BUCKET, QUALITY_LEVEL,
    SYNTHETIC_KIND, TEXT, with_document_columns,
)
from curation.stage import StageStats
from curation.synthetic.backends.base import Backend, GenerationRequest, GenerationResult
from curation.synthetic.chunking import TokenCounter, chunk_documents
from curation.synthetic.config import RephraseConfig
from curation.synthetic.postprocess import postprocess
from curation.synthetic.sampling import chunk_seed
from curation.synthetic.tasks import PromptTemplate, load_prompt, route

log = logging.getLogger(__name__)

ROW = "row"
PLAN_REASON = "plan_reason"

PLAN_SCHEMA = pa.schema([
    (ID, pa.string()), (PARENT_ID, pa.string()), (ROW, pa.int64()), (SYNTHETIC_KIND, pa.string()),
    (CHUNK_INDEX, pa.int32()), ("chunk", pa.string()), ("chunk_tokens", pa.int32()), ("seed", pa.int64()),
    (PLAN_REASON, pa.string()),
])
ANSWER_SCHEMA = pa.schema([
    (ID, pa.string()), ("output", pa.string()), ("finish_reason", pa.string()), ("error", pa.string()),
    ("prompt_tokens", pa.int32()), ("generated_tokens", pa.int32()), ("attempts", pa.int16()),
])


def unit_id(parent_id: str, kind: str | None, chunk_index: int) -> str:
    """The id of a synthetic row: parent id, task and chunk index hashed (DESIGN.md)."""
    return xxhash.xxh3_128_hexdigest(f"{parent_id}\x00{kind or ''}\x00{chunk_index}".encode())


def prompts_for(config: RephraseConfig) -> dict[str, PromptTemplate]:
    return {task: load_prompt(task, config.prompts_dir) for task in config.tasks}


# --------------------------------------------------------------------------------- 1. plan


def quality_buckets(table: pa.Table, config: RephraseConfig, path: str) -> np.ndarray:
    """int64 ensemble bucket per document (from `quality_bucket`, else `quality_level`)."""
    if QUALITY_BUCKET in table.column_names:
        buckets = pc.fill_null(table[QUALITY_BUCKET].cast(pa.int64()), -1).to_numpy(zero_copy_only=False).copy()
    elif QUALITY_LEVEL in table.column_names:
        levels = table[QUALITY_LEVEL].to_pylist()
        buckets = np.array([LEVEL_FLOORS.get(level, -1) for level in levels], dtype=np.int64)  # a level's lowest bucket
    else:
        buckets = np.full(table.num_rows, -1, dtype=np.int64)
    missing = buckets < 0
    if missing.any():
        if config.missing_quality == "error":
            raise ValueError(f"{path}: {int(missing.sum())} document(s) without quality_bucket or quality_level; "
                             "run the classify stage first, or set rephrase.missing_quality to low or high")
        fill = config.low_quality_buckets[0] if config.missing_quality == "low" else config.high_quality_buckets[1]
        buckets[missing] = fill
    return buckets


def plan_batch(table: pa.Table, first_row: int, config: RephraseConfig, counter: TokenCounter,
               path: str = "input") -> pa.Table:
    """The units of one batch of documents, sorted by (document, task, chunk)."""
    ids = table[ID].to_pylist()
    texts = pc.fill_null(table[TEXT], "").to_pylist()
    masks = route(quality_buckets(table, config, path), config.tasks, config.low_quality_buckets,
                  config.high_quality_buckets)
    empty = np.array([not t.strip() for t in texts], dtype=bool)
    foreign = np.zeros(table.num_rows, bool)
    if config.languages is not None and LANGUAGE in table.column_names:
        foreign = ~pc.fill_null(pc.is_in(table[LANGUAGE], pa.array(config.languages)), False).to_numpy(zero_copy_only=False)
    skipped = empty | foreign
    routed = np.zeros(table.num_rows, bool)
    columns: dict[str, list] = {name: [] for name in PLAN_SCHEMA.names}
    order: list[tuple[int, int, int]] = []

    def add(row: int, kind: str | None, index: int, chunk: str | None, tokens: int, reason: str | None,
            task_rank: int) -> None:
        uid = unit_id(ids[row], kind, index)
        for name, value in ((ID, uid), (PARENT_ID, ids[row]), (ROW, first_row + row), (SYNTHETIC_KIND, kind),
                            (CHUNK_INDEX, index), ("chunk", chunk), ("chunk_tokens", tokens),
                            ("seed", chunk_seed(uid, config.seed)), (PLAN_REASON, reason)):
            columns[name].append(value)
        order.append((row, task_rank, index))

    chunked: dict[int, dict[int, list]] = {}  # budget -> row -> chunks: tasks of one budget cut once
    for task in config.tasks:
        rows = np.flatnonzero(masks[task] & ~skipped)
        routed[rows] = True
        known = chunked.setdefault(config.input_budget(task), {})
        new = [r for r in rows.tolist() if r not in known]
        known.update(zip(new, chunk_documents([texts[i] for i in new], config.input_budget(task), counter)))
    for rank, task in enumerate(config.tasks):
        rows = np.flatnonzero(masks[task] & ~skipped)
        for row in rows.tolist():
            for index, chunk in enumerate(chunked[config.input_budget(task)][row]):
                too_short = chunk.n_tokens < config.min_chunk_tokens
                add(row, task, index, chunk.text, chunk.n_tokens, "chunk_too_short" if too_short else None, rank)
    for row in np.flatnonzero(skipped | ~routed).tolist():
        reason = "empty_text" if empty[row] else "language_not_rephrased" if foreign[row] else "not_routed"
        add(row, None, -1, None, 0, reason, -1)
    plan = pa.table(columns, schema=PLAN_SCHEMA)
    return plan.take(pa.array(sorted(range(len(order)), key=order.__getitem__), pa.int64()))


def rejected_units(rejected: pa.Table) -> pa.Table:
    """Records a reader could not use (bad JSON, broken WARC records): one dropped unit each."""
    n = rejected.num_rows
    return pa.table({ID: rejected[ID].cast(pa.string()), PARENT_ID: rejected[ID].cast(pa.string()),
                     ROW: pa.array(np.full(n, -1, np.int64)), SYNTHETIC_KIND: pa.nulls(n, pa.string()),
                     CHUNK_INDEX: pa.array(np.full(n, -1, np.int32)), "chunk": pa.nulls(n, pa.string()),
                     "chunk_tokens": pa.array(np.zeros(n, np.int32)), "seed": pa.array(np.zeros(n, np.int64)),
                     PLAN_REASON: rejected[DROP_REASON].cast(pa.string())}, schema=PLAN_SCHEMA)


def plan_metadata(plan_path: Path) -> dict[str, str]:
    """Footer of a plan: documents read, the batch size they were read with, file errors."""
    raw = pq.ParquetFile(plan_path).metadata.metadata or {}
    return {k.decode(): v.decode() for k, v in raw.items() if not k.startswith(b"ARROW:")}


@dataclass
class PlanInfo:
    documents: int = 0  # documents read
    rephrased: int = 0  # documents with at least one chunk to send (what max_docs counts)
    errors: list[str] = field(default_factory=list)


def plan_shard(input_path: str, plan_path: Path, config: RephraseConfig, counter: TokenCounter, *,
               max_docs: int | None, batch_rows: int, strict: bool) -> PlanInfo:
    """Write the plan of one input shard (one row group per input batch); skipped when present.

    With `max_docs`, reading stops at the document that makes `max_docs` rephrased documents.
    """
    if plan_path.exists():
        meta = plan_metadata(plan_path)
        return PlanInfo(documents=int(meta["documents"]), rephrased=int(meta["rephrased"]),
                        errors=[e for e in meta["errors"].split("\n") if e])
    info = PlanInfo()
    writer = ShardWriter(plan_path, row_group_rows=1 << 30)
    try:
        for raw in read_batches(input_path, source="", batch_rows=batch_rows):
            if max_docs is not None and info.rephrased >= max_docs:
                break
            plan, rejected = plan_batch(raw.table, info.documents, config, counter, input_path), raw.rejected
            sent_rows = np.unique(plan.filter(pc.is_valid(plan[SYNTHETIC_KIND]))[ROW].to_numpy())
            read = raw.table.num_rows + rejected.num_rows
            if max_docs is not None and info.rephrased + len(sent_rows) > max_docs:  # cut inside this batch
                last = int(sent_rows[max_docs - info.rephrased - 1])
                plan = plan.filter(pc.less_equal(plan[ROW], last))
                sent_rows, rejected, read = sent_rows[sent_rows <= last], rejected.slice(0, 0), last + 1 - info.documents
            writer.write(pa.concat_tables([plan, rejected_units(rejected)]))
            info.documents += read
            info.rephrased += len(sent_rows)
    except InputFileError as err:
        if strict:
            writer.abort()
            raise
        log.error("%s", err)
        info.errors.append(str(err))
    writer.close(empty_schema=PLAN_SCHEMA, metadata={
        "documents": str(info.documents), "rephrased": str(info.rephrased), "batch_rows": str(batch_rows),
        "errors": "\n".join(info.errors)})
    return info


# ----------------------------------------------------------------------------- 2. generate


def answered_ids(answers_dir: Path) -> set[str]:
    return {i for path in sorted(answers_dir.glob("b*.parquet")) for i in pq.read_table(path, columns=[ID])[ID].to_pylist()}


def answers_table(results: list[GenerationResult]) -> pa.Table:
    return pa.table({
        ID: [r.id for r in results], "output": [r.text for r in results],
        "finish_reason": [r.finish_reason for r in results], "error": [r.error for r in results],
        "prompt_tokens": [r.prompt_tokens for r in results], "generated_tokens": [r.generated_tokens for r in results],
        "attempts": [r.attempts for r in results],
    }, schema=ANSWER_SCHEMA)


def generate_shard(plan_path: Path, answers_dir: Path, config: RephraseConfig, backend: Callable[[], Backend],
                   prompts: dict[str, PromptTemplate], progress: Callable[[str], None] = log.info) -> int:
    """Answer every planned unit not answered yet; returns how many were sent now.

    `backend` is called only when there is something to send (a model loads once, lazily).
    """
    answers_dir.mkdir(parents=True, exist_ok=True)
    done = answered_ids(answers_dir)
    existing = sorted(answers_dir.glob("b*.parquet"))
    sequence = int(existing[-1].stem[1:]) + 1 if existing else 0
    done_ids = pa.array(sorted(done), pa.string())
    plan_file = pq.ParquetFile(plan_path)
    sent = 0
    for group in range(plan_file.num_row_groups):
        plan = plan_file.read_row_group(group, columns=[ID, SYNTHETIC_KIND, "chunk", "seed", PLAN_REASON])
        todo = plan.filter(pc.and_(pc.is_null(plan[PLAN_REASON]), pc.invert(pc.is_in(plan[ID], done_ids))))
        if todo.num_rows == 0:
            continue
        requests = [GenerationRequest(id=uid, system=prompts[kind].system, user=prompts[kind].user_message(chunk),
                                      opening=prompts[kind].opening, max_new_tokens=config.output_cap(kind), seed=seed)
                    for uid, kind, chunk, seed in zip(*(todo[c].to_pylist() for c in (ID, SYNTHETIC_KIND, "chunk", "seed")))]
        answered = 0
        for results in backend().generate(requests):
            write_table_atomic(answers_table(results), answers_dir / f"b{sequence:06d}.parquet")
            sequence += 1
            answered += len(results)
            progress(f"rephrase: {plan_path.stem}: {answered}/{todo.num_rows} chunks "
                     f"(input batch {group + 1}/{plan_file.num_row_groups})")
        sent += answered
    return sent


# ------------------------------------------------------------------------------- 3. finish


@dataclass
class RephraseReport:
    """Counts beyond `StageStats`: per task, tokens and requests (summed over shards with +)."""

    documents: int = 0  # read
    rephrased: int = 0  # with at least one chunk sent
    tasks: dict[str, dict] = field(default_factory=dict)  # task -> {"chunks", "kept", "dropped": {reason: n}}
    prompt_tokens: int = 0
    generated_tokens: int = 0
    attempts: int = 0
    request_errors: dict[str, int] = field(default_factory=dict)
    output_languages: dict[str, int] = field(default_factory=dict)

    def __add__(self, other: RephraseReport) -> RephraseReport:
        tasks = {t: dict(v) for t, v in self.tasks.items()}
        for task, counts in other.tasks.items():
            mine = tasks.setdefault(task, {"chunks": 0, "kept": 0, "dropped": {}})
            mine["chunks"] += counts["chunks"]
            mine["kept"] += counts["kept"]
            mine["dropped"] = dict(Counter(mine["dropped"]) + Counter(counts["dropped"]))
        return RephraseReport(
            documents=self.documents + other.documents, rephrased=self.rephrased + other.rephrased, tasks=tasks,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            generated_tokens=self.generated_tokens + other.generated_tokens, attempts=self.attempts + other.attempts,
            request_errors=dict(Counter(self.request_errors) + Counter(other.request_errors)),
            output_languages=dict(Counter(self.output_languages) + Counter(other.output_languages)))

    def to_dict(self) -> dict:
        return {"documents": self.documents, "rephrased": self.rephrased, "tasks": self.tasks, "prompt_tokens": self.prompt_tokens,
                "generated_tokens": self.generated_tokens, "attempts": self.attempts,
                "request_errors": dict(sorted(self.request_errors.items())),
                "output_languages": dict(sorted(self.output_languages.items(), key=lambda kv: -kv[1]))}


def read_answers(answers_dir: Path) -> pa.Table:
    paths = sorted(answers_dir.glob("b*.parquet"))
    return pa.concat_tables([pq.read_table(p, schema=ANSWER_SCHEMA) for p in paths]) if paths else ANSWER_SCHEMA.empty_table()


def read_parents(input_path: str, rows: np.ndarray, documents: int, batch_rows: int) -> pa.Table:
    """The input documents at positions `rows` (sorted), without their text; with the input's
    columns even when no row is wanted, since they make the columns of the synthetic rows."""
    parts, first = [], 0
    try:
        for raw in read_batches(input_path, source="", batch_rows=batch_rows):
            table = raw.table.drop_columns([c for c in raw.table.column_names if c == TEXT])
            wanted = rows[(rows >= first) & (rows < first + table.num_rows)] - first
            parts.append(table.take(pa.array(wanted, pa.int64())))
            first += table.num_rows + raw.rejected.num_rows
            if first >= documents:
                break
    except InputFileError:
        pass  # counted when planning; the rows read before the error are all that is needed
    return pa.concat_tables(parts, promote_options="default") if parts else pa.table({ID: pa.array([], pa.string())})


def join_answers(plan_path: Path, answers_dir: Path) -> pa.Table:
    """The plan with every unit's answer columns, in plan order; checks each sent unit has exactly one."""
    plan = pq.read_table(plan_path)
    answers = read_answers(answers_dir)
    if pc.count_distinct(answers[ID]).as_py() != answers.num_rows:
        raise RuntimeError(f"{answers_dir}: a chunk was answered twice")
    position = pa.array(np.arange(plan.num_rows, dtype=np.int64))
    joined = plan.append_column("_position", position).join(answers, ID, join_type="left outer")
    joined = joined.sort_by("_position").drop_columns(["_position"])  # joins do not keep order
    unanswered = pc.and_(pc.is_null(joined[PLAN_REASON]), pc.is_null(joined["attempts"]))
    if pc.any(unanswered).as_py():
        raise RuntimeError(f"{plan_path.name}: {pc.sum(unanswered).as_py()} planned chunks have no answer yet")
    return joined


def finish_shard(input_path: str, plan_path: Path, answers_dir: Path, config: RephraseConfig,
                 prompts: dict[str, PromptTemplate], counter: TokenCounter, seen: set[str], *,
                 exact_counts: bool) -> tuple[pa.Table, StageStats, RephraseReport]:
    """Post-process one shard's answers, drop answers seen in earlier shards or rows, build rows."""
    meta = plan_metadata(plan_path)
    documents, rephrased, batch_rows = int(meta["documents"]), int(meta["rephrased"]), int(meta["batch_rows"])
    joined = join_answers(plan_path, answers_dir)
    sent = pc.is_null(joined[PLAN_REASON]).to_numpy(zero_copy_only=False)
    reasons = joined[PLAN_REASON].to_numpy(zero_copy_only=False).astype(object)
    texts = np.full(joined.num_rows, None, dtype=object)
    language = np.full(joined.num_rows, None, dtype=object)
    scores = np.full(joined.num_rows, np.nan, dtype=np.float32)
    sent_rows = np.flatnonzero(sent)
    parent_rows = np.unique(joined[ROW].to_numpy()[sent_rows])
    parents = read_parents(input_path, parent_rows, documents, batch_rows)
    parent_at = {r: i for i, r in enumerate(parent_rows.tolist())}
    if len(sent_rows):
        answered = joined.take(pa.array(sent_rows))
        if LANGUAGE in parents.column_names:
            positions = pa.array([parent_at[r] for r in answered[ROW].to_pylist()], pa.int64())
            answered = answered.append_column("parent_language", parents[LANGUAGE].take(positions))
        result = postprocess(answered, prompts, config.postprocess, counter)
        reasons[sent_rows] = result.reasons
        texts[sent_rows] = result.texts
        language[sent_rows] = result.language
        scores[sent_rows] = result.language_score
    if config.postprocess.dedup:
        _drop_duplicates(texts, reasons, seen)

    kept = np.flatnonzero(reasons == None)  # noqa: E711
    rows = _output_rows(joined, kept, texts, language, scores, parents, parent_at, counter, exact_counts)
    stats = StageStats(name="rephrase", docs_in=joined.num_rows, docs_out=rows.num_rows,
                       bytes_in=int(pc.sum(pc.binary_length(joined["chunk"])).as_py() or 0),
                       bytes_out=int(pc.sum(pc.binary_length(rows[TEXT])).as_py() or 0) if rows.num_rows else 0,
                       dropped=dict(Counter(r for r in reasons.tolist() if r is not None)))
    report = _report(joined, reasons, language, kept, documents, rephrased)
    return rows, stats, report


def _drop_duplicates(texts: np.ndarray, reasons: np.ndarray, seen: set[str]) -> None:
    """Exact duplicates (normalised text) of rows kept earlier, in this shard or before it."""
    rows = np.flatnonzero(reasons == None)  # noqa: E711
    hashes = text_hashes(pa.array(texts[rows].tolist(), pa.string()), ExactDedupConfig())
    for row, digest in zip(rows.tolist(), hashes):
        if digest in seen:
            reasons[row] = "exact_duplicate"
        else:
            seen.add(digest)


def _output_rows(joined: pa.Table, kept: np.ndarray, texts: np.ndarray, language: np.ndarray,
                 scores: np.ndarray, parents: pa.Table, parent_at: dict[int, int], counter: TokenCounter,
                 exact_counts: bool) -> pa.Table:
    """Synthetic rows: the parent's columns in its order (quality, provenance), with their own id,
    text and language, then synthetic_kind, parent_id, chunk_index, n_tokens. The columns
    follow from the parents' schema alone, so that every shard has the same ones, empty or not."""
    units = joined.take(pa.array(kept, pa.int64()))
    positions = pa.array([parent_at[r] for r in units[ROW].to_pylist()], pa.int64())
    inherited = parents.take(positions)
    row_texts = texts[kept].tolist()
    n_tokens = pa.array(counter.count(row_texts).astype(np.int32)) if exact_counts else pa.nulls(len(kept), pa.int32())
    own = {ID: units[ID], TEXT: pa.array(row_texts, pa.string()),
           LANGUAGE: pa.array(language[kept].tolist(), pa.string()),
           LANGUAGE_SCORE: pa.array(scores[kept], pa.float32(), mask=np.isnan(scores[kept])),
           SYNTHETIC_KIND: units[SYNTHETIC_KIND], PARENT_ID: units[PARENT_ID], CHUNK_INDEX: units[CHUNK_INDEX],
           N_TOKENS: n_tokens}
    names = parents.column_names + [name for name in own if name not in parents.column_names]
    return with_document_columns(pa.table({name: own[name] if name in own else inherited[name] for name in names}))


def _report(joined: pa.Table, reasons: np.ndarray, language: np.ndarray, kept: np.ndarray,
            documents: int, rephrased: int) -> RephraseReport:
    kinds = joined[SYNTHETIC_KIND].to_pylist()
    tasks: dict[str, dict] = {}
    for kind, reason in zip(kinds, reasons.tolist()):
        if kind is None:
            continue
        counts = tasks.setdefault(kind, {"chunks": 0, "kept": 0, "dropped": {}})
        counts["chunks"] += 1
        if reason is None:
            counts["kept"] += 1
        else:
            counts["dropped"][reason] = counts["dropped"].get(reason, 0) + 1
    errors = Counter(e for e in joined["error"].to_pylist() if e is not None)
    return RephraseReport(
        documents=documents, rephrased=rephrased, tasks=tasks,
        prompt_tokens=int(pc.sum(joined["prompt_tokens"]).as_py() or 0),
        generated_tokens=int(pc.sum(joined["generated_tokens"]).as_py() or 0),
        attempts=int(pc.sum(joined["attempts"]).as_py() or 0), request_errors=dict(errors),
        output_languages=dict(Counter(language[kept].tolist())))
