"""Exact deduplication on a hash of the normalised text, global across shards.

Three passes joined by files (the flow runs them on Dask):
1. `hash_documents` per shard: (hash, shard, row, id) rows;
2. `find_duplicates` per hash partition after a shuffle on `hash`: every copy but the first
   (lowest shard, then row: the earliest in crawl order) is a duplicate of that first one;
3. `curation.stage.RowDropFilter` per shard drops its duplicate rows as `exact_duplicate`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from curation.schema import ID, TEXT

HASH = "hash"
SHARD = "shard"
ROW = "row"
KEPT_ID = "kept_id"
HASHES_SCHEMA = pa.schema([(HASH, pa.string()), (SHARD, pa.int32()), (ROW, pa.int64()), (ID, pa.string())])
DUPLICATES_SCHEMA = pa.schema(
    [(ID, pa.string()), (KEPT_ID, pa.string()), (HASH, pa.string()), (SHARD, pa.int32()), (ROW, pa.int64())]
)


@dataclass(frozen=True, kw_only=True)
class ExactDedupConfig:
    """`normalize` lower-cases and folds whitespace before hashing (NeMo Curator hashes raw text)."""

    hash: Literal["xxh128", "md5"] = "xxh128"
    normalize: bool = True

    def __post_init__(self) -> None:
        if self.hash not in ("xxh128", "md5"):
            raise ValueError(f"exact_dedup.hash must be 'xxh128' or 'md5', got {self.hash!r}")


def normalized_texts(texts: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Lower-case, whitespace runs folded to one space, trimmed (vectorised in Arrow)."""
    folded = pc.replace_substring_regex(pc.utf8_lower(texts), pattern=r"\s+", replacement=" ")
    return pc.utf8_trim_whitespace(folded)


def text_hashes(texts: pa.ChunkedArray | pa.Array, config: ExactDedupConfig) -> list[str]:
    """Hex digest per document: one hash call per document, none per character."""
    values = normalized_texts(texts) if config.normalize else texts
    encoded = [t.encode() for t in values.to_pylist()]
    if config.hash == "md5":
        return [hashlib.md5(b).hexdigest() for b in encoded]
    return [xxhash.xxh3_128_hexdigest(b) for b in encoded]


def hash_documents(table: pa.Table, shard: int, first_row: int, config: ExactDedupConfig) -> pa.Table:
    """Pass 1: the (hash, shard, row, id) table of one batch of a shard."""
    rows = np.arange(first_row, first_row + table.num_rows, dtype=np.int64)
    return pa.Table.from_arrays(
        [pa.array(text_hashes(table[TEXT], config), pa.string()),
         pa.array(np.full(table.num_rows, shard, dtype=np.int32)), pa.array(rows), table[ID]],
        schema=HASHES_SCHEMA,
    )


def find_duplicates(hashes: pd.DataFrame) -> pd.DataFrame:
    """Pass 2, on one shuffle partition: each non-first copy mapped to its first copy's id."""
    if hashes.empty:
        return pd.DataFrame({name: pd.Series(dtype=_PANDAS_DTYPES[name]) for name in DUPLICATES_SCHEMA.names})
    ordered = hashes.sort_values([HASH, SHARD, ROW], kind="stable")
    first_id = ordered.groupby(HASH, sort=False)[ID].transform("first")
    duplicate = ordered[HASH].duplicated(keep="first")
    out = ordered.loc[duplicate, [ID, HASH, SHARD, ROW]].assign(**{KEPT_ID: first_id[duplicate]})
    return out[DUPLICATES_SCHEMA.names].astype(_PANDAS_DTYPES)


_PANDAS_DTYPES = {ID: "string", KEPT_ID: "string", HASH: "string", SHARD: "int32", ROW: "int64"}
