"""LSH banding: documents that share a band key become candidate pairs.

A document is addressed by one int64, ``shard << 32 | row`` (its row position in its input
shard), so the later passes can find it again without carrying ids around. Candidate edges
come from each bucket as a star from its smallest document plus a chain through its sorted
members: 2(n - 1) edges for a bucket of n, never n(n - 1)/2, and the chain keeps a bucket
connected after verification even when the star's centre turns out to be a false positive.

Buckets are gathered through files, not a Dask shuffle: every shard's band rows are stored
sorted by key, and bucket task p takes the p-th of `parts` equal ranges of the (uniform)
64-bit keys from every shard, so each bucket sits whole in one task.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from curation.fuzzy_dedup.config import MinHashConfig
from curation.fuzzy_dedup.minhash import MAX_HASH, band_keys
from curation.fuzzy_dedup.sorting import unique_pairs

BAND_KEY = "band_key"
DOC = "doc"
DOC_A = "doc_a"
DOC_B = "doc_b"
BANDS_SCHEMA = pa.schema([(BAND_KEY, pa.uint64()), (DOC, pa.int64())])
EDGES_SCHEMA = pa.schema([(DOC_A, pa.int64()), (DOC_B, pa.int64())])


def doc_index(shard: int, rows: np.ndarray) -> np.ndarray:
    return (np.int64(shard) << np.int64(32)) | np.asarray(rows, dtype=np.int64)


def doc_shard(docs: np.ndarray) -> np.ndarray:
    return (np.asarray(docs, dtype=np.int64) >> np.int64(32)).astype(np.int64)


def doc_row(docs: np.ndarray) -> np.ndarray:
    return np.asarray(docs, dtype=np.int64) & np.int64(0xFFFFFFFF)


def band_table(signature_NP: np.ndarray, docs_N: np.ndarray, config: MinHashConfig,
               recall_rows: int | None = None) -> pa.Table:
    """One (band key, doc) row per band of every document with at least one shingle.

    With `recall_rows`, the same signature is also cut into bands of that many rows (more
    bands, each easier to match): a second chance for pairs the first banding misses.
    """
    has_shingles = ~(signature_NP == MAX_HASH).all(axis=1)
    signature_NP = signature_NP[has_shingles]
    keys = [band_keys(signature_NP, config)]
    if recall_rows:
        keys.append(band_keys(signature_NP, config, rows=recall_rows, band_offset=config.bands))
    keys_NK = np.concatenate(keys, axis=1)
    docs = np.repeat(np.asarray(docs_N, dtype=np.int64)[has_shingles], keys_NK.shape[1])
    return pa.table({BAND_KEY: keys_NK.reshape(-1), DOC: docs}, schema=BANDS_SCHEMA)


def key_range(sorted_keys: np.ndarray, part: int, parts: int) -> slice:
    """The rows of `sorted_keys` (uint64, ascending) in the part-th of `parts` equal key ranges."""
    start, stop = ((p << 64) // parts for p in (part, part + 1))
    return slice(int(np.searchsorted(sorted_keys, np.uint64(start))),
                 len(sorted_keys) if part == parts - 1 else int(np.searchsorted(sorted_keys, np.uint64(stop))))


def bucket_edges(keys: np.ndarray, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Star-and-chain candidate edges (doc_a < doc_b, unique) of every bucket among (key, doc) rows."""
    # The same document twice in one bucket (a repeated band) would only give self-edges.
    keys, docs = unique_pairs(np.asarray(keys, dtype=np.uint64), np.asarray(docs, dtype=np.int64))
    same_bucket = np.r_[False, keys[1:] == keys[:-1]]
    bucket_start = np.maximum.accumulate(np.where(~same_bucket, np.arange(len(keys)), 0))
    members = np.flatnonzero(same_bucket)
    return unique_pairs(np.r_[docs[bucket_start[members]], docs[members - 1]], np.r_[docs[members], docs[members]])
