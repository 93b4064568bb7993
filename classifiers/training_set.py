"""Labelled training sets from named sources of real documents (positives vs negatives).

DCLM trains its fastText classifier on reference-quality positives (OpenHermes-2.5, ELI5)
against random crawl (RefinedWeb). Offline, the same shape comes from the machine's own
documentation: reference manuals as positives (`hq`), licence texts, copyright files and
changelogs as negatives (`cc`). Each row gets a binary `label` (fastText) and a 0-5 `score`
(the regression target of the FineWeb-Edu-style classifier), and a fixed `split`.

Here scores come from the source's fixed `score`; `classifiers.annotate` makes a set whose
scores an LLM gave (the FineWeb-Edu 0-5 prompt), with the same columns and split rule.
"""

from __future__ import annotations

import glob
import gzip
import json
import random
import re
from pathlib import Path
from typing import Literal

import lxml.html
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

from classifiers.columns import ID, LABEL, SCORE, SOURCE, SPLIT, TEXT

POSITIVE = "hq"  # DCLM's label names: __label__hq / __label__cc
NEGATIVE = "cc"
TRAIN, TEST = "train", "test"

TRAINING_SET_SCHEMA = pa.schema([
    (ID, pa.string()), (TEXT, pa.string()), (SOURCE, pa.string()),
    (LABEL, pa.string()), (SCORE, pa.float32()), (SPLIT, pa.string()),
])

# Navigation and page furniture of Sphinx (Python docs) and DocBook (PostgreSQL, handbook) pages:
# it repeats on every page, so a classifier would learn the template instead of the prose.
_FURNITURE_XPATH = ("//script|//style|//nav|//header|//footer|//*[@role='navigation']"
                    "|//*[contains(@class,'sphinxsidebar')]|//*[contains(@class,'related')]"
                    "|//*[contains(@class,'navheader')]|//*[contains(@class,'navfooter')]")


@dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class SourceSpec:
    """Files of one named source: globs (`**` recursive), their label and regression score."""

    name: str  # the `source` column of its documents
    paths: tuple[str, ...] = Field(min_length=1)  # globs of HTML, text or .gz files
    label: Literal["hq", "cc"]  # hq: high quality (positive), cc: common crawl (negative)
    score: float | None = None  # default: 5.0 for hq, 0.0 for cc (the FineWeb-Edu 0-5 scale)
    max_docs: int | None = None  # documents sampled from this source; null: max_docs_per_source

    @property
    def target(self) -> float:
        if self.score is not None:
            return float(self.score)
        return 5.0 if self.label == POSITIVE else 0.0


DEFAULT_SOURCES = (
    SourceSpec(name="postgresql_doc", label=POSITIVE, paths=("/usr/share/doc/postgresql-doc-15/html/*.html",)),
    SourceSpec(name="python_doc", label=POSITIVE, paths=("/usr/share/doc/python3.11/html/[!_]*/**/*.html",)),
    SourceSpec(name="debian_handbook", label=POSITIVE, paths=("/usr/share/doc/debian-handbook/html/en-US/*.html",)),
    SourceSpec(name="licence", label=NEGATIVE,
               paths=("/usr/share/common-licenses/*", "/usr/share/doc/*/copyright")),
    SourceSpec(name="changelog", label=NEGATIVE, paths=("/usr/share/doc/*/changelog.Debian.gz",)),
)


@dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class TrainingSetConfig:
    """Labelled documents from named local sources, split into train and test."""

    sources: tuple[SourceSpec, ...] = Field(default=DEFAULT_SOURCES, min_length=1)  # default: local docs vs licences
    max_docs_per_source: int | None = 400  # documents sampled from each source; null: all
    test_fraction: float = Field(default=0.2, gt=0, lt=1)  # share of each source held out for evaluation
    min_chars: int = 200  # shorter texts say little about quality
    max_chars: int = 20_000  # cap per document so a few long manuals do not dominate
    seed: int = 0  # of the sampling and the split


def html_to_text(html: bytes | str) -> str:
    """Main text of a documentation page: page furniture removed, blank lines folded."""
    doc = lxml.html.fromstring(html)
    for element in doc.xpath(_FURNITURE_XPATH):
        element.drop_tree()
    main = doc.xpath("//*[@role='main']") or doc.xpath("//body") or [doc]
    return _fold_blank_lines(main[0].text_content())


def read_document(path: Path) -> str:
    """Text of a local file: HTML stripped of tags, .gz decompressed, anything else as UTF-8."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    if path.suffix in (".html", ".htm"):
        return html_to_text(data) if data.strip() else ""
    return _fold_blank_lines(data.decode("utf-8", errors="replace"))


def _fold_blank_lines(text: str) -> str:
    return re.sub(r"\n\s*\n+", "\n\n", text).strip()


def source_files(spec: SourceSpec) -> list[Path]:
    files = {Path(p) for pattern in spec.paths for p in glob.glob(pattern, recursive=True)}
    return sorted(p for p in files if p.is_file() and not p.is_symlink())


def build_training_set(config: TrainingSetConfig = TrainingSetConfig()) -> pa.Table:
    """Sample every source (fixed seed), read and clean its documents, assign a fixed split."""
    rows: list[dict] = []
    for spec in config.sources:
        files = source_files(spec)
        if not files:
            raise ValueError(f"source {spec.name}: no files match {', '.join(spec.paths)}")
        limit = spec.max_docs or config.max_docs_per_source
        random.Random(f"{config.seed}:{spec.name}").shuffle(files)
        taken = 0
        for path in files:
            if limit is not None and taken >= limit:
                break
            text = read_document(path)
            if len(text) < config.min_chars:
                continue
            doc_id = xxhash.xxh3_128_hexdigest(str(path).encode())
            rows.append({ID: doc_id, TEXT: text[: config.max_chars], SOURCE: spec.name,
                         LABEL: spec.label, SCORE: spec.target,
                         SPLIT: assign_split(doc_id, config.seed, config.test_fraction)})
            taken += 1
    return pa.Table.from_pylist(rows, schema=TRAINING_SET_SCHEMA)


def assign_split(doc_id: str, seed: int, test_fraction: float) -> str:
    """TEST or TRAIN by a hash of the id: fixed for a document, whichever set it is in."""
    return TEST if xxhash.xxh64_intdigest(f"{seed}:{doc_id}".encode()) / 2**64 < test_fraction else TRAIN


def write_training_set(table: pa.Table, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    elif path.name.endswith(".jsonl"):
        with path.open("w") as handle:
            for row in table.to_pylist():
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    else:
        raise ValueError(f"{path}: training set must end in .parquet or .jsonl")


def read_labelled(path: str | Path) -> pa.Table:
    """A labelled set (.parquet or .jsonl): `text` and `label` (`hq`/`cc`, or `__label__hq`);
    `score` defaults from the label, `split` to train for every row."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such training set")
    table = pq.read_table(path) if path.suffix == ".parquet" else pa.Table.from_pylist(_read_jsonl(path))
    for column in (TEXT, LABEL):
        if column not in table.column_names:
            raise ValueError(f"{path}: no {column!r} column (columns: {', '.join(table.column_names)})")
    labels = pc.replace_substring_regex(table[LABEL].cast(pa.string()), "^__label__", "")
    unknown = set(pc.unique(labels).to_pylist()) - {POSITIVE, NEGATIVE}
    if unknown:
        raise ValueError(f"{path}: labels must be {POSITIVE!r} or {NEGATIVE!r}, found {sorted(map(str, unknown))}")
    table = table.set_column(table.column_names.index(LABEL), LABEL, labels)
    if SCORE not in table.column_names:
        table = table.append_column(SCORE, pc.if_else(pc.equal(labels, POSITIVE), 5.0, 0.0).cast(pa.float32()))
    if SPLIT not in table.column_names:
        table = table.append_column(SPLIT, pa.array([TRAIN] * table.num_rows, pa.string()))
    return table


def _read_jsonl(path: Path) -> list[dict]:
    with path.open() as handle:
        return [json.loads(line) for line in handle if line.strip()]


def split(table: pa.Table, name: str) -> pa.Table:
    return table.filter(pc.equal(table[SPLIT], name))
