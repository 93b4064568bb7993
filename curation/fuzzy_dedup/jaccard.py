"""Exact Jaccard similarity of candidate pairs, on the same 32-bit shingle hashes as MinHash.

A partition's shingle sets are kept as one sorted array of unique hashes per document
(CSR: `offsets`, `values`). The Jaccard of many pairs at once: tag every element with its
pair number, sort, and count the values that appear in both sets of a pair; no Python
loop per pair or per shingle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from curation.fuzzy_dedup.minhash import MinHashConfig, shingle_hashes
from curation.fuzzy_dedup.sorting import unique_sorted

_LOW32 = np.uint64(0xFFFFFFFF)


@dataclass(frozen=True)
class ShingleSets:
    """Sorted unique shingle hashes of documents: set i is values[offsets[i]:offsets[i + 1]]."""

    offsets: np.ndarray  # int64[N + 1]
    values: np.ndarray  # uint32[total]

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    def to_arrow(self) -> pa.Array:
        return pa.LargeListArray.from_arrays(pa.array(self.offsets, pa.int64()), pa.array(self.values, pa.uint32()))

    @classmethod
    def from_arrow(cls, lists: pa.Array | pa.ChunkedArray) -> ShingleSets:
        if isinstance(lists, pa.ChunkedArray):
            lists = lists.combine_chunks() if lists.num_chunks else pa.array([], pa.large_list(pa.uint32()))
        lists = lists.cast(pa.large_list(pa.uint32()))
        offsets = lists.offsets.to_numpy().astype(np.int64)
        values = lists.values.to_numpy(zero_copy_only=False)[offsets[0]:offsets[-1]]
        return cls(offsets - offsets[0], values.astype(np.uint32))


def shingle_sets(texts: pa.Array | pa.ChunkedArray, config: MinHashConfig) -> ShingleSets:
    return sets_of_shingles(*shingle_hashes(texts, config), len(texts))


def sets_of_shingles(hashes_S: np.ndarray, owner_S: np.ndarray, n_docs: int) -> ShingleSets:
    """Sorted unique hashes per document from `shingle_hashes` output."""
    keys = unique_sorted((owner_S.astype(np.uint64) << np.uint64(32)) | hashes_S.astype(np.uint64))
    owners = (keys >> np.uint64(32)).astype(np.int64)
    counts = np.bincount(owners, minlength=n_docs)
    return ShingleSets(np.r_[0, np.cumsum(counts)].astype(np.int64), (keys & _LOW32).astype(np.uint32))


def _gather(sets: ShingleSets, index: np.ndarray, pair_ids: np.ndarray) -> np.ndarray:
    """(pair << 32 | value) for every element of sets[index[i]], for all i."""
    lengths = sets.sizes[index]
    starts = sets.offsets[index]
    total = int(lengths.sum())
    segment_first = np.cumsum(lengths) - lengths
    positions = np.repeat(starts - segment_first, lengths) + np.arange(total, dtype=np.int64)
    tags = np.repeat(pair_ids.astype(np.uint64), lengths) << np.uint64(32)
    return tags | sets.values[positions].astype(np.uint64)


def pair_jaccard(sets_a: ShingleSets, index_a: np.ndarray, sets_b: ShingleSets, index_b: np.ndarray,
                 max_elements: int = 4_000_000) -> np.ndarray:
    """float32 Jaccard of sets_a[index_a[i]] and sets_b[index_b[i]]; two empty sets give 0."""
    index_a = np.asarray(index_a, dtype=np.int64)
    index_b = np.asarray(index_b, dtype=np.int64)
    sizes = sets_a.sizes[index_a] + sets_b.sizes[index_b]
    out = np.zeros(len(index_a), dtype=np.float32)
    # Batches of pairs bound the sort's memory; a batch always holds at least one pair.
    boundaries = np.searchsorted(np.cumsum(sizes), np.arange(max_elements, int(sizes.sum()), max_elements))
    for batch in np.split(np.arange(len(index_a)), np.unique(np.maximum(boundaries, 1))):
        if len(batch) == 0:
            continue
        local = np.arange(len(batch), dtype=np.int64)
        keys = np.sort(np.r_[_gather(sets_a, index_a[batch], local), _gather(sets_b, index_b[batch], local)])
        both = keys[1:][keys[1:] == keys[:-1]] >> np.uint64(32)
        intersection = np.bincount(both.astype(np.int64), minlength=len(batch))
        union = sizes[batch] - intersection
        out[batch] = np.where(union > 0, intersection / np.maximum(union, 1), 0.0)
    return out
