"""Column names and types of the curated document schema (DESIGN.md, "The data that flows")."""

from __future__ import annotations

import pyarrow as pa
import xxhash

ID = "id"
TEXT = "text"
URL = "url"
SOURCE = "source"
CRAWL_DATE = "crawl_date"
LANGUAGE = "language"
LANGUAGE_SCORE = "language_score"
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
