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
