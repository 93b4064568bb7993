"""The passes of fuzzy dedup over files: each a plain function over one shard or one partition.

`flows.engine.fuzzy_dedup` maps them on Dask; tests call them directly. Working files under the stage
directory (`work`) make every pass resumable and inspectable:

    _minhash/bands-00003.arrow     pass 1, per shard: (band_key, doc) rows of shard 3, sorted by key
    _minhash/ids-00003.parquet     (doc, id) of shard 3
    _minhash/shingles-00003.arrow  shingle sets of shard 3's documents (verify on)
    _buckets/part-00007.arrow      pass 2, per band-key range: candidate edges of its buckets,
                                   partitioned by the shard of `doc_a` (curation.partitioned)
    _pairs/part-00003.parquet      pass 3, per shard of doc_a: every distinct candidate pair and
                                   its exact Jaccard (null without verification)
    _similar/part-00003.parquet    the pairs at or above the threshold: the graph's edges
    _components/                   pass 4 (curation.fuzzy_dedup.components): rounds, then stars
                                   (doc, kept) partitioned by the shard of doc
    duplicates.parquet/part-00003.parquet
                                   pass 5, per shard: id, kept_id, component, jaccard, shard, row
                                   of each of its removed documents

A document is addressed by one int64, shard << 32 | row (`lsh.doc_index`). Memory per task is one
batch (pass 1), one band-key range of every shard (pass 2), one shard's candidate pairs and the
shingle pages they touch (pass 3), one partition of edges (pass 4), one shard's removed rows (5).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.exact_dedup import KEPT_ID, ROW, SHARD
from curation.fuzzy_dedup.config import FuzzyDedupConfig
from curation.fuzzy_dedup.jaccard import pair_jaccard
from curation.fuzzy_dedup.lsh import (
    BAND_KEY, BANDS_SCHEMA, DOC, DOC_A, DOC_B, band_table, bucket_edges, doc_index, doc_row, doc_shard, key_range,
)
from curation.fuzzy_dedup.minhash import signatures
from curation.fuzzy_dedup.shingles import ShingleSets, shingle_sets
from curation.fuzzy_dedup.sorting import unique_pairs
from curation.io.readers import readable_batches
from curation.io.writers import write_arrow_atomic, write_table_atomic
from curation.partitioned import column_array, read_mapped, read_partition, write_partitioned
from curation.schema import ID, TEXT
from curation.stage import rows_digest

COMPONENT = "component"
JACCARD = "jaccard"
SHINGLES = "shingles"
KEPT = "kept"
#: `component` is the address (shard << 32 | row) of the component's kept document: stable across
#: runs and partitionings, and it sorts components in crawl order.
DUPLICATES_SCHEMA = pa.schema([(ID, pa.string()), (KEPT_ID, pa.string()), (COMPONENT, pa.int64()),
                               (JACCARD, pa.float32()), (SHARD, pa.int32()), (ROW, pa.int64())])
IDS_SCHEMA = pa.schema([(DOC, pa.int64()), (ID, pa.string())])
SHINGLES_SCHEMA = pa.schema([(DOC, pa.int64()), (SHINGLES, pa.large_list(pa.uint32()))])
PAIRS_SCHEMA = pa.schema([(DOC_A, pa.int64()), (DOC_B, pa.int64()), (JACCARD, pa.float32())])
EDGES_SCHEMA = pa.schema([(DOC_A, pa.int64()), (DOC_B, pa.int64())])


def minhash_dir(work: str | Path) -> Path:
    return Path(work) / "_minhash"


def bands_path(work: str | Path, shard: int) -> str:
    return str(minhash_dir(work) / f"bands-{shard:05d}.arrow")


def ids_path(work: str | Path, shard: int) -> str:
    return str(minhash_dir(work) / f"ids-{shard:05d}.parquet")


def shingles_path(work: str | Path, shard: int) -> str:
    return str(minhash_dir(work) / f"shingles-{shard:05d}.arrow")


# ------------------------------------------------------------------------ pass 1: signatures


def minhash_shard(path: str, shard: int, work: str, config: FuzzyDedupConfig, batch_rows: int,
                  strict: bool) -> None:
    """Band rows (sorted by key) and ids of one shard; with verification on, also every document's
    shingle set (4 bytes per distinct shingle: cheaper than reading and hashing the text again)."""
    outputs = [bands_path(work, shard), ids_path(work, shard)] + ([shingles_path(work, shard)] if config.verify else [])
    if all(Path(p).exists() for p in outputs):
        return
    bands, ids, sets, first_row = [], [], [], 0
    for raw in readable_batches(path, batch_rows=batch_rows, strict=strict):
        docs = doc_index(shard, np.arange(first_row, first_row + raw.table.num_rows))
        first_row += raw.table.num_rows
        shingles = shingle_sets(raw.table[TEXT], config.shingle)
        bands.append(band_table(signatures(shingles, config.minhash), docs, config.minhash, config.active_recall_rows))
        ids.append(pa.table({DOC: docs, ID: raw.table[ID].cast(pa.string())}, schema=IDS_SCHEMA))
        if config.verify:
            sets.append(pa.table({DOC: docs, SHINGLES: shingles.to_arrow()}, schema=SHINGLES_SCHEMA))
    if config.verify:
        write_arrow_atomic(_concat(sets, SHINGLES_SCHEMA), shingles_path(work, shard))
    write_table_atomic(_concat(ids, IDS_SCHEMA), ids_path(work, shard))
    write_arrow_atomic(_concat(bands, BANDS_SCHEMA).sort_by(BAND_KEY).combine_chunks(), bands_path(work, shard))


def _concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    return pa.concat_tables(tables).combine_chunks() if tables else schema.empty_table()


# ----------------------------------------------------------------- pass 2: buckets to edges


def bucket_range(part: int, out_path: str, work: str, shards: int, parts: int) -> int:
    """Candidate edges of the buckets in the part-th of `parts` band-key ranges, from every shard's
    sorted band rows (each bucket sits whole in one range), partitioned by the shard of doc_a."""
    if not Path(out_path).exists():
        keys, docs = [], []
        for shard in range(shards):
            bands = read_mapped(bands_path(work, shard))
            shard_keys = column_array(bands, BAND_KEY).to_numpy()
            rows = key_range(shard_keys, part, parts)
            keys.append(shard_keys[rows])
            docs.append(column_array(bands, DOC).to_numpy()[rows])
        doc_a, doc_b = bucket_edges(np.concatenate(keys), np.concatenate(docs))
        write_partitioned(pa.table({DOC_A: doc_a, DOC_B: doc_b}, schema=EDGES_SCHEMA), doc_shard(doc_a), out_path)
    return read_mapped(out_path).num_rows


# ------------------------------------------------------------------- pass 3: verification


def verify_shard(shard: int, pairs_path: str, similar_path: str, work: str, bucket_paths: list[str],
                 config: FuzzyDedupConfig) -> tuple[int, int]:
    """The distinct candidate pairs whose doc_a is in `shard` (a pair shared by several bands comes
    from several key ranges), their exact Jaccard, and the similar ones; returns both counts."""
    if not Path(similar_path).exists():
        edges = read_partition(bucket_paths, shard)
        doc_a, doc_b = unique_pairs(edges[DOC_A].to_numpy(), edges[DOC_B].to_numpy())
        if config.verify:
            jaccard = pa.array(block_jaccard(doc_a, doc_b, work), pa.float32())
            similar = pc.greater_equal(jaccard, config.threshold)
        else:
            jaccard, similar = pa.nulls(len(doc_a), pa.float32()), pa.array(np.ones(len(doc_a), dtype=bool))
        pairs = pa.table({DOC_A: doc_a, DOC_B: doc_b, JACCARD: jaccard}, schema=PAIRS_SCHEMA)
        write_table_atomic(pairs, pairs_path)
        write_table_atomic(pairs.filter(similar).select([DOC_A, DOC_B]), similar_path)
    return pq.ParquetFile(pairs_path).metadata.num_rows, pq.ParquetFile(similar_path).metadata.num_rows


def block_jaccard(doc_a: np.ndarray, doc_b: np.ndarray, work: str) -> np.ndarray:
    """Exact Jaccard of every pair, one block of pairs per (shard of a, shard of b): each block
    memory-maps the two shards' shingle files and touches only the pages of its documents."""
    jaccard = np.zeros(len(doc_a), dtype=np.float32)
    blocks = doc_shard(doc_a) * (1 << 31) + doc_shard(doc_b)
    order = np.argsort(blocks, kind="stable")
    loaded: dict[int, tuple[np.ndarray, ShingleSets]] = {}
    for members in np.split(order, np.flatnonzero(np.diff(blocks[order])) + 1):
        if len(members) == 0:
            continue
        docs_a, sets_a = _shingles(loaded, work, int(doc_shard(doc_a[members[:1]])[0]))
        docs_b, sets_b = _shingles(loaded, work, int(doc_shard(doc_b[members[:1]])[0]))
        jaccard[members] = pair_jaccard(sets_a, np.searchsorted(docs_a, doc_a[members]),
                                        sets_b, np.searchsorted(docs_b, doc_b[members]))
    return jaccard


def _shingles(loaded: dict, work: str, shard: int) -> tuple[np.ndarray, ShingleSets]:
    if shard not in loaded:
        table = read_mapped(shingles_path(work, shard))
        loaded[shard] = (column_array(table, DOC).to_numpy(), ShingleSets.from_arrow(column_array(table, SHINGLES)))
    return loaded[shard]


# ------------------------------------------------------------- pass 5: duplicates per shard


def shard_duplicates(shard: int, out_path: str, work: str, star_paths: list[str], verify: bool) -> tuple[int, str]:
    """One row per removed document of `shard`: its id, its kept document's id, the component and
    (verify on) their exact Jaccard (the kept document may reach it only through others). Returns
    the count and a digest of the removed rows: the global pass's decision for the shard."""
    if not Path(out_path).exists():
        stars = read_partition(star_paths, shard).sort_by(DOC)
        removed, kept = stars[DOC].to_numpy(), stars[KEPT].to_numpy()
        jaccard = block_jaccard(removed, kept, work) if verify and len(removed) else None
        write_table_atomic(pa.table({
            ID: ids_of(work, removed), KEPT_ID: ids_of(work, kept), COMPONENT: pa.array(kept, pa.int64()),
            JACCARD: pa.array(jaccard, pa.float32()) if jaccard is not None else pa.nulls(len(removed), pa.float32()),
            SHARD: pa.array(doc_shard(removed).astype(np.int32)), ROW: pa.array(doc_row(removed)),
        }, schema=DUPLICATES_SCHEMA), out_path)
    rows = pq.read_table(out_path, columns=[ROW])[ROW].to_numpy()
    return len(rows), rows_digest(rows)


def ids_of(work: str, docs: np.ndarray) -> pa.Array:
    """The id of each document in `docs`, reading one shard's id file at a time."""
    found = []
    shards = doc_shard(docs)
    for shard in np.unique(shards):
        table = pq.read_table(ids_path(work, int(shard)))
        found.append(table.filter(pc.is_in(table[DOC], pa.array(docs[shards == shard]))))
    table = pa.concat_tables(found) if found else IDS_SCHEMA.empty_table()
    order = np.argsort(table[DOC].to_numpy())
    position = order[np.searchsorted(table[DOC].to_numpy(), docs, sorter=order)] if len(docs) else order
    return table[ID].take(pa.array(position, pa.int64())).combine_chunks()
