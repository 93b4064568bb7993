"""Exact deduplication on a hash of the normalised text, global across shards.

Four passes joined by files under the stage directory (`flows.engine.exact_dedup` maps them on Dask):

    _hashes/part-00003.arrow      pass 1, per shard: (hash, shard, row, id) of shard 3, partitioned
                                  by hash range (curation.partitioned)
    _groups/part-00007.arrow      pass 2, per hash range: every copy but the first (lowest shard,
                                  then row: the earliest in crawl order) with its first copy's id,
                                  partitioned by the shard it must be dropped from
    duplicates.parquet/part-00003.parquet
                                  pass 3, per shard: shard 3's duplicates sorted by row (the
                                  directory reads as one table: `pq.read_table`)
    part-00003.parquet            pass 4: `curation.stage.RowDropFilter` drops them as `exact_duplicate`

A hash-range task holds one range of the corpus's hashes (a shard's worth when there are as many
ranges as shards); a shard task holds one shard's duplicates. Nothing holds the whole table.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash
from pydantic import ConfigDict
from pydantic.dataclasses import dataclass

from curation.io.readers import readable_batches
from curation.io.writers import write_table_atomic
from curation.partitioned import read_mapped, read_partition, range_partition, write_partitioned
from curation.schema import ID, TEXT
from curation.stage import rows_digest

HASH = "hash"
SHARD = "shard"
ROW = "row"
KEPT_ID = "kept_id"
HASHES_SCHEMA = pa.schema([(HASH, pa.string()), (SHARD, pa.int32()), (ROW, pa.int64()), (ID, pa.string())])
DUPLICATES_SCHEMA = pa.schema(
    [(ID, pa.string()), (KEPT_ID, pa.string()), (HASH, pa.string()), (SHARD, pa.int32()), (ROW, pa.int64())]
)


@dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class ExactDedupConfig:
    """`normalize` lower-cases and folds whitespace before hashing (NeMo Curator hashes raw text)."""

    hash: Literal["xxh128", "md5"] = "xxh128"  # digest of the (normalised) text
    normalize: bool = True  # lower-case and fold whitespace first


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


def find_duplicates(hashes: pa.Table) -> pa.Table:
    """Pass 2's rule on rows of any hash range: each non-first copy (in shard, row order) mapped
    to its first copy's id, as a DUPLICATES_SCHEMA table (in hash order)."""
    ordered = hashes.sort_by([(HASH, "ascending"), (SHARD, "ascending"), (ROW, "ascending")])
    digests = ordered[HASH].combine_chunks() if ordered.num_rows else pa.array([], pa.string())
    first = np.r_[True, ~pc.equal(digests[1:], digests[:-1]).to_numpy(zero_copy_only=False)][:ordered.num_rows]
    group_start = np.maximum.accumulate(np.where(first, np.arange(ordered.num_rows), 0))
    copies = ordered.filter(pa.array(~first))
    kept_ids = ordered[ID].take(pa.array(group_start[~first], pa.int64()))
    return copies.append_column(KEPT_ID, kept_ids).select(DUPLICATES_SCHEMA.names).cast(DUPLICATES_SCHEMA)


def hash_keys(hex_digests: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The first 64 bits of each hex digest as uint64 (uniform: the partition key), vectorised."""
    chars_N16 = np.frombuffer(np.asarray(hex_digests.to_pylist(), dtype="S16").tobytes(), dtype=np.uint8)
    chars_N16 = chars_N16.reshape(-1, 16).astype(np.uint64)
    nibbles_N16 = np.where(chars_N16 >= ord("a"), chars_N16 - ord("a") + 10, chars_N16 - ord("0"))
    shifts_16 = np.uint64(4) * np.arange(15, -1, -1, dtype=np.uint64)
    return np.bitwise_or.reduce(nibbles_N16 << shifts_16, axis=1) if len(nibbles_N16) else np.zeros(0, np.uint64)


# ------------------------------------------------------------------------------------ passes


def hash_shard(path: str, shard: int, out_path: str, config: ExactDedupConfig, parts: int, *,
               batch_rows: int = 10_000, strict: bool = False) -> str:
    """Pass 1: hash every document of one input shard, partitioned by hash range into `parts`."""
    if not Path(out_path).exists():
        tables, first_row = [], 0
        for raw in readable_batches(path, batch_rows=batch_rows, strict=strict):
            tables.append(hash_documents(raw.table, shard, first_row, config))
            first_row += raw.table.num_rows
        hashes = pa.concat_tables(tables) if tables else HASHES_SCHEMA.empty_table()
        write_partitioned(hashes, range_partition(hash_keys(hashes[HASH]), parts), out_path)
    return out_path


def group_partition(partition: int, out_path: str, hash_paths: list[str]) -> int:
    """Pass 2: the duplicates among one hash range of every shard, partitioned by their shard."""
    if not Path(out_path).exists():
        duplicates = find_duplicates(read_partition(hash_paths, partition))
        write_partitioned(duplicates, duplicates[SHARD].to_numpy(), out_path)
    return read_mapped(out_path).num_rows


def shard_duplicates(shard: int, out_path: str, group_paths: list[str]) -> tuple[int, str]:
    """Pass 3: shard `shard`'s duplicates sorted by row; returns their count and a digest of the
    rows (the global pass's decision for the shard: its output is rewritten when it changes)."""
    if not Path(out_path).exists():
        duplicates = read_partition(group_paths, shard).sort_by(ROW)
        write_table_atomic(duplicates.select(DUPLICATES_SCHEMA.names).cast(DUPLICATES_SCHEMA), out_path)
    rows = pq.read_table(out_path, columns=[ROW])[ROW].to_numpy()
    return len(rows), rows_digest(rows)

