"""LLM annotation for classifiers: a 0-5 educational-value score per document, given by a language model.

FineWeb-Edu (Penedo et al. 2024) had Llama-3-70B-Instruct score 450k pages with an additive
0-5 prompt and trained a regression head on frozen embeddings to reproduce the scores;
Nemotron-CC (Su et al. 2024, section 2.2) made two of its three quality classifiers the same way,
from Nemotron-4-340B and Mixtral-8x22B annotations. `run_annotate` sends documents through the
rephrase stage's backends (a local transformers model or an OpenAI-compatible server) with such
a prompt, reads each answer's score (`parse_score`) and writes a labelled set that
`ccforge classifiers train` turns into an embedding regression head:

    OUT/chunks/chunk-NNNNN.parquet     input chunk N: every document with its status (annotated,
                                       unparseable or failed), reason, score and the raw answer
    OUT/chunks/chunk-NNNNN.done.json   written after its Parquet: the chunk's key and counts
    OUT/training_set.parquet           the annotated documents: id, text, source, label, score, split
    OUT/stats.json                     documents = annotated + unparseable + failed, by reason

A chunk is `chunk_docs` documents of one input file. A rerun skips every chunk whose marker
holds the current key, so a crash costs at most the chunk in flight and a finished chunk is
never sent twice. This is the one module of `classifiers` that imports `curation`: it drives the
synthetic stage's generation backends (issue 18) instead of a second copy of them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import field
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml
from pydantic import ConfigDict, Field, field_validator
from pydantic.dataclasses import dataclass

from classifiers.columns import ID, LABEL, SCORE, SOURCE, SPLIT, TEXT
from classifiers.training_set import NEGATIVE, POSITIVE, TRAINING_SET_SCHEMA, assign_split
from curation.io.readers import read_batches
from curation.io.writers import read_json_if_present, write_json_atomic, write_table_atomic
from curation.schema import DROP_REASON
from curation.synthetic.backends import Backend, GenerationRequest, build_backend
from curation.synthetic.config import PLAIN_TEMPLATE, HttpBackendConfig, LocalBackendConfig, RephraseConfig
from curation.synthetic.sampling import chunk_seed
from curation.synthetic.tasks import PromptTemplate

PROMPTS_DIR = Path(__file__).parent / "prompts"
DEFAULT_PROMPT = "educational_value"
MAX_SCORE = 5

ANNOTATED, UNPARSEABLE, FAILED = "annotated", "unparseable", "failed"
ANNOTATION_SCHEMA = pa.schema([
    (ID, pa.string()), (TEXT, pa.string()), (SOURCE, pa.string()), ("status", pa.string()), ("reason", pa.string()),
    (SCORE, pa.int8()), ("answer", pa.string()), ("finish_reason", pa.string()), ("prompt_tokens", pa.int32()),
    ("generated_tokens", pa.int32()), ("attempts", pa.int16()),
])


@dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class AnnotateConfig:
    """`ccforge classifiers annotate`: the model that scores documents, its prompt, and the set it makes.

    `backend`, `local` and `http` are the rephrase stage's backend sections, field for field.
    """

    backend: Literal["local", "http"] | None = None  # local (with local.model) or http (endpoint and model)
    local: LocalBackendConfig = field(default_factory=LocalBackendConfig)
    http: HttpBackendConfig = field(default_factory=HttpBackendConfig)
    prompt: str = DEFAULT_PROMPT  # a packaged prompt (educational_value) or a YAML file with system and user
    #: Characters of each document the prompt carries: an extract is enough to judge a page, and
    #: prompt tokens are most of an annotation's cost.
    max_input_chars: int = Field(default=6000, ge=100)
    max_new_tokens: int = Field(default=256, ge=1)  # the answer: a justification of at most 100 words, then the score
    temperature: float = Field(default=0.0, ge=0, le=2)  # 0: greedy, so a score is not one draw of several
    top_p: float = Field(default=1.0, gt=0, le=1)  # nucleus sampling, when temperature > 0
    seed: int = 0  # with the document id, its sampling seed; also the seed of the train/test split
    plain_template: str = PLAIN_TEMPLATE  # for tokenizers without a chat template and http.api: completions
    max_docs: int | None = Field(default=None, ge=1)  # annotate the first N documents (in input order) only
    chunk_docs: int = Field(default=256, ge=1)  # documents per output part: the unit of resumption
    #: Label `hq` from this score up (FineWeb-Edu keeps pages with int_score >= 3); `cc` below.
    positive_min_score: int = Field(default=3, ge=1, le=MAX_SCORE)
    test_fraction: float = Field(default=0.2, gt=0, lt=1)  # share of documents held out (split by id hash)

    @field_validator("plain_template")
    @classmethod
    def _has_user(cls, template: str) -> str:
        if "{user}" not in template:
            raise ValueError("must contain {user}")
        return template

    def require_backend(self) -> None:
        """Raise a one-line error when the chosen backend lacks what it needs to run."""
        if self.backend is None:
            raise ValueError("annotate: backend is not set: choose local (with local.model) or http "
                             "(with http.endpoint and http.model)")
        if self.backend == "local" and not self.local.model:
            raise ValueError("annotate: local.model is not set: give a Hugging Face causal LM directory")
        if self.backend == "http" and not (self.http.endpoint and self.http.model):
            raise ValueError("annotate: http needs endpoint (e.g. http://localhost:8000/v1) and model")

    def generation_config(self) -> RephraseConfig:
        """The backend settings in the form `build_backend` takes (no prefill: the score ends the answer)."""
        return RephraseConfig(backend=self.backend, local=self.local, http=self.http, temperature=self.temperature,
                              top_p=self.top_p, seed=self.seed, plain_template=self.plain_template)

    def model_files(self) -> list[str]:
        """Files of the local model and tokenizer (their identity is part of the chunks' key)."""
        if self.backend != "local":
            return []
        dirs = {Path(self.local.model), Path(self.local.tokenizer or self.local.model)}
        return sorted(str(p) for d in dirs for p in d.rglob("*") if p.is_file())


def load_annotation_prompt(prompt: str) -> PromptTemplate:
    """A packaged prompt by name, or a YAML file with `system` (may be null) and `user` (with {document} once)."""
    packaged = PROMPTS_DIR / f"{prompt}.yaml"
    path = packaged if packaged.is_file() else Path(prompt)
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in PROMPTS_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"prompt {prompt!r}: neither a packaged prompt ({names}) nor a YAML file")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or set(data) - {"system", "user"} or "user" not in data:
        raise ValueError(f"{path}: expected keys system and user (got {sorted(data) if isinstance(data, dict) else data!r})")
    return PromptTemplate(task=path.stem, system=data.get("system"), user=data["user"], opening=None)


# The score line of the prompt's answer format; its value is what follows, up to the next blank.
_SCORE_LINE = re.compile(r"educational\s+score\s*:", re.IGNORECASE)
_VALUE = re.compile(r"\s*\**\s*(\S*)")
_WHOLE = re.compile(r"(-?\d+)(?:/(\d+))?")


def parse_score(answer: str | None) -> tuple[int | None, str | None]:
    """(score, None) from the last "Educational score: N" of an answer, N a whole number 0..5
    ("4", "4.", "**4**", "4/5"); else (None, reason): empty_answer, no_score, not_a_number,
    not_integer ("3.5"), out_of_range ("7", "-1") or wrong_scale ("4/10")."""
    if not answer or not answer.strip():
        return None, "empty_answer"
    markers = list(_SCORE_LINE.finditer(answer))
    if not markers:
        return None, "no_score"
    value = _VALUE.match(answer, markers[-1].end())[1].strip("*([").rstrip(".,;:!)]\"'*")
    whole = _WHOLE.fullmatch(value)
    if whole is None:
        return None, "not_integer" if re.fullmatch(r"-?\d+[.,]\d+", value) else "not_a_number"
    if whole[2] is not None and int(whole[2]) != MAX_SCORE:
        return None, "wrong_scale"
    score = int(whole[1])
    return (score, None) if 0 <= score <= MAX_SCORE else (None, "out_of_range")


# ------------------------------------------------------------------------------------ one chunk


def annotate_chunk(documents: pa.Table, backend: Backend, prompt: PromptTemplate, config: AnnotateConfig) -> pa.Table:
    """Every document of a chunk (`id`, `text`, `source`, `drop_reason`) with its status, reason and score.

    Rows with a `drop_reason` (records the reader rejected) and empty texts are not sent: they
    fail with that reason (`empty_text`), so that every document of the input is counted.
    """
    ids, texts, sources = (documents[c].to_pylist() for c in (ID, TEXT, SOURCE))
    rejected = documents[DROP_REASON].to_pylist()
    requests = [GenerationRequest(id=str(row), system=prompt.system, user=prompt.user_message(text[:config.max_input_chars]),
                                  opening=None, max_new_tokens=config.max_new_tokens, seed=chunk_seed(doc_id, config.seed))
                for row, (doc_id, text, reason) in enumerate(zip(ids, texts, rejected))
                if reason is None and text and text.strip()]
    results = {int(r.id): r for batch in backend.generate(requests) for r in batch} if requests else {}
    if len(results) != len(requests):
        raise RuntimeError(f"the {backend.name} backend answered {len(results)} of {len(requests)} requests")
    rows = []
    for row, document in enumerate(zip(ids, texts, sources)):
        row_data = dict(zip((ID, TEXT, SOURCE), document))
        result = results.get(row)
        if result is None:
            rows.append(row_data | {"status": FAILED, "reason": rejected[row] or "empty_text"})
            continue
        row_data |= {"answer": result.text, "finish_reason": result.finish_reason, "prompt_tokens": result.prompt_tokens,
                     "generated_tokens": result.generated_tokens, "attempts": result.attempts}
        if result.error is not None:
            rows.append(row_data | {"status": FAILED, "reason": result.error})
            continue
        score, problem = parse_score(result.text)
        rows.append(row_data | {"status": UNPARSEABLE if problem else ANNOTATED, "reason": problem, SCORE: score})
    return pa.Table.from_pylist(rows, schema=ANNOTATION_SCHEMA)


# -------------------------------------------------------------------------------- accounting


@dataclasses.dataclass
class AnnotateStats:
    """documents = annotated + unparseable + failed; unparseable and failed by reason, annotated by score."""

    documents: int = 0
    annotated: int = 0
    unparseable: dict[str, int] = dataclasses.field(default_factory=dict)
    failed: dict[str, int] = dataclasses.field(default_factory=dict)
    scores: dict[str, int] = dataclasses.field(default_factory=dict)  # "0".."5" -> documents
    prompt_tokens: int = 0
    generated_tokens: int = 0

    @classmethod
    def of(cls, annotations: pa.Table) -> AnnotateStats:
        statuses, reasons = annotations["status"].to_pylist(), annotations["reason"].to_pylist()
        scores = Counter(s for s in annotations[SCORE].to_pylist() if s is not None)
        return cls(documents=annotations.num_rows, annotated=statuses.count(ANNOTATED),
                   unparseable=dict(Counter(r for s, r in zip(statuses, reasons) if s == UNPARSEABLE)),
                   failed=dict(Counter(r for s, r in zip(statuses, reasons) if s == FAILED)),
                   scores={str(k): scores[k] for k in range(MAX_SCORE + 1)},
                   prompt_tokens=int(pc.sum(annotations["prompt_tokens"]).as_py() or 0),
                   generated_tokens=int(pc.sum(annotations["generated_tokens"]).as_py() or 0))

    def check_accounting(self) -> None:
        counted = self.annotated + sum(self.unparseable.values()) + sum(self.failed.values())
        if counted != self.documents or sum(self.scores.values()) != self.annotated:
            raise AssertionError(f"annotate accounting: {self.documents} documents, {counted} counted")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        def by_reason(counts: dict[str, int]) -> str:
            return ", ".join(f"{r} {n:,}" for r, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "-"

        return (f"{self.documents:,} documents: {self.annotated:,} annotated, {sum(self.unparseable.values()):,} "
                f"unparseable ({by_reason(self.unparseable)}), {sum(self.failed.values()):,} failed "
                f"({by_reason(self.failed)}); scores 0-5: {' '.join(str(n) for n in self.scores.values())}")


# ----------------------------------------------------------------------------- the whole run


def annotation_key(config: AnnotateConfig, prompt: PromptTemplate, fingerprint: str) -> str:
    """What an answer depends on, hashed: prompt, model, sampling, chunking and the inputs'
    `fingerprint` (with the local model's files). Not max_docs, nor how fast answers come."""
    model = ({"api": config.http.api, "model": config.http.model, "extra_body": config.http.extra_body}
             if config.backend == "http" else {"dtype": config.local.dtype})
    material = {"backend": config.backend, "model": model, "system": prompt.system, "user": prompt.user,
                "max_input_chars": config.max_input_chars, "max_new_tokens": config.max_new_tokens,
                "temperature": config.temperature, "top_p": config.top_p, "seed": config.seed,
                "plain_template": config.plain_template, "chunk_docs": config.chunk_docs, "inputs": fingerprint}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]


def input_chunks(files: list[str], config: AnnotateConfig) -> Iterator[pa.Table]:
    """Chunks of `chunk_docs` documents (`id`, `text`, `source`, `drop_reason`) in input order,
    the last one cut at `max_docs`; records the reader rejected come after a chunk's documents."""
    left = config.max_docs
    for path in files:
        for raw in read_batches(path, source=Path(path).stem, batch_rows=config.chunk_docs):
            if TEXT not in raw.table.column_names:
                raise ValueError(f"{path}: no text column (annotate reads JSONL or Parquet with id and text)")
            good = raw.table.select([ID, TEXT, SOURCE]).append_column(DROP_REASON, pa.nulls(raw.table.num_rows, pa.string()))
            chunk = pa.concat_tables([good, raw.rejected.select([ID, SOURCE, DROP_REASON])], promote_options="default")
            if left is not None:
                chunk = chunk.slice(0, left)
                left -= chunk.num_rows
            if chunk.num_rows:
                yield chunk
            if left == 0:
                return


def _chunk_paths(output_dir: Path, index: int) -> tuple[Path, Path]:
    return output_dir / "chunks" / f"chunk-{index:05d}.parquet", output_dir / "chunks" / f"chunk-{index:05d}.done.json"


def _finished(marker: Path, key: str, documents: int) -> bool:
    """A chunk made under `key` from as many documents (a changed max_docs cuts the last chunk elsewhere)."""
    done = read_json_if_present(marker)
    return done is not None and done["key"] == key and done["documents"] == documents


def training_set(annotations: pa.Table, config: AnnotateConfig) -> pa.Table:
    """The annotated documents as a labelled set (`classifiers.training_set` columns): the score
    is the regression target, the label `hq` from `positive_min_score` up."""
    kept = annotations.filter(pc.equal(annotations["status"], ANNOTATED))
    ids = kept[ID].to_pylist()
    return pa.table({
        ID: kept[ID], TEXT: kept[TEXT], SOURCE: kept[SOURCE],
        LABEL: pc.if_else(pc.greater_equal(kept[SCORE], config.positive_min_score), POSITIVE, NEGATIVE),
        SCORE: kept[SCORE].cast(pa.float32()),
        SPLIT: pa.array([assign_split(i, config.seed, config.test_fraction) for i in ids], pa.string()),
    }, schema=TRAINING_SET_SCHEMA)


def run_annotate(config: AnnotateConfig, files: list[str], output_dir: str | Path, *, fingerprint: str,
                 progress: Callable[[str], None] = print) -> AnnotateStats:
    """Annotate `files` (JSONL/Parquet with id and text) chunk by chunk into `output_dir`, skipping
    chunks finished under the same key; write the training set and stats. `fingerprint` identifies
    the input files and `config.model_files()` (size and time of each, say)."""
    config.require_backend()
    output_dir = Path(output_dir)
    prompt = load_annotation_prompt(config.prompt)
    key = annotation_key(config, prompt, fingerprint)
    backend: Backend | None = None
    parts, annotated_now, started = [], 0, time.perf_counter()
    try:
        for index, chunk in enumerate(input_chunks(files, config)):
            part, marker = _chunk_paths(output_dir, index)
            if not _finished(marker, key, chunk.num_rows):
                backend = backend or build_backend(config.generation_config())  # a model loads only when needed
                annotations = annotate_chunk(chunk, backend, prompt, config)
                write_table_atomic(annotations, part)
                stats = AnnotateStats.of(annotations)
                write_json_atomic({"key": key, "documents": chunk.num_rows, "stats": stats.to_dict()}, marker)
                annotated_now += 1
                progress(f"annotate: chunk {index}: {stats.summary()}")
            parts.append(part)
    finally:
        if backend is not None:
            backend.close()
    annotations = pa.concat_tables([pq.read_table(p, schema=ANNOTATION_SCHEMA) for p in parts]) if parts \
        else ANNOTATION_SCHEMA.empty_table()
    stats = AnnotateStats.of(annotations)
    stats.check_accounting()
    write_table_atomic(training_set(annotations, config), output_dir / "training_set.parquet")
    seconds = time.perf_counter() - started
    this_run = {"chunks_annotated": annotated_now, "chunks_reused": len(parts) - annotated_now, "seconds": round(seconds, 3)}
    write_json_atomic(stats.to_dict() | {"key": key, "this_run": this_run}, output_dir / "stats.json")
    progress(f"annotate: {stats.summary()} ({annotated_now} of {len(parts)} chunks annotated in this run, {seconds:.1f} s)")
    return stats
