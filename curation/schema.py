"""Column names and types of the curated document schema (DESIGN.md, "The data that flows").

Every column name curation code writes or reads in a stage's output is spelled here once.
The names the classifiers also use (id, text, source and the quality columns) are defined in
`classifiers.columns`, because classifiers may not import curation, and re-exported here.
Columns of a global stage's working files (`_hashes/`, `_minhash/`, `_plan/` ...) live
next to the pass that writes them.
"""

from __future__ import annotations

import pyarrow as pa
import xxhash

from classifiers.columns import (
    ID, QUALITY_BUCKET, QUALITY_LEVEL, SOURCE, TEXT, bucket_column, score_column,
)

__all__ = [
    "CHUNK_INDEX", "CONTENT_TYPE", "CRAWL_DATE", "DOCUMENT_SCHEMA", "DROP_REASON", "ID",
    "INPUT_IDS", "LANGUAGE", "LANGUAGE_SCORE", "N_TOKENS", "PARENT_ID", "PAYLOAD", "QUALITY_BUCKET",
    "QUALITY_LEVEL", "RAW", "SOURCE", "SYNTHETIC_KIND", "TEXT", "URL", "bucket_column",
    "document_id", "score_column", "with_document_columns",
]

# Provenance and language (extract, langid).
URL = "url"
CRAWL_DATE = "crawl_date"
LANGUAGE = "language"
LANGUAGE_SCORE = "language_score"
# Synthetic rows (rephrase): the task that wrote the row, its parent document and chunk.
SYNTHETIC_KIND = "synthetic_kind"
PARENT_ID = "parent_id"
CHUNK_INDEX = "chunk_index"
# Tokens: the count under the configured tokenizer, and the token shards' ids.
N_TOKENS = "n_tokens"
INPUT_IDS = "input_ids"
# Raw WARC rows before extraction, and rejected rows (`<stage>/rejected/`).
CONTENT_TYPE = "content_type"
PAYLOAD = "payload"
RAW = "raw"  # the line of a rejected JSONL record
DROP_REASON = "drop_reason"

#: Columns every document table carries from the first stage on.
DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field(ID, pa.string(), nullable=False),
        pa.field(TEXT, pa.string()),
        pa.field(URL, pa.string()),
        pa.field(SOURCE, pa.string()),
        pa.field(CRAWL_DATE, pa.string()),
    ]
)


def document_id(source_uri: str, record_offset: int) -> str:
    """Stable id: 128-bit hash of the source URI and the record's offset inside it."""
    return xxhash.xxh3_128_hexdigest(f"{source_uri}\x00{record_offset}".encode())


def with_document_columns(table: pa.Table) -> pa.Table:
    """Put the DOCUMENT_SCHEMA columns first with their types (nulls where absent); keep the rest.

    JSONL and Parquet inputs may lack `url` or `crawl_date`; every shard must still share the
    curated schema so that shards of different inputs read back as one table.
    """
    columns, fields = [], []
    for field in DOCUMENT_SCHEMA:
        if field.name in table.column_names:
            columns.append(table[field.name].cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
        fields.append(field)
    for name in table.column_names:
        if name not in DOCUMENT_SCHEMA.names:
            columns.append(table[name])
            fields.append(table.schema.field(name))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))
