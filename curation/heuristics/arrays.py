"""Vectorised building blocks: a partition's words/lines as one flat array with an owner row each.

Shapes: N rows (documents) in the partition, W flat items (words, lines, ...) over all rows.
Every function here is one pass of Arrow or numpy over the whole partition; nothing loops over
items in Python.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: Odd 64-bit multipliers (golden ratio and a splitmix64 constant) for polynomial n-gram hashing
#: and for mixing the owner row into a key.
_HASH_BASE = np.uint64(0x9E3779B97F4A7C15)
_ROW_MIX = np.uint64(0xBF58476D1CE4E5B9)


@dataclass(frozen=True)
class Flat:
    """Items of N rows laid end to end: `values[i]` belongs to row `owner_W[i]` (ascending)."""

    values: pa.Array
    owner_W: np.ndarray  # int64
    n_rows: int

    @classmethod
    def from_lists(cls, lists: pa.Array) -> Flat:
        owner_W = pc.list_parent_indices(lists).to_numpy().astype(np.int64, copy=False)
        return cls(values=pc.list_flatten(lists), owner_W=owner_W, n_rows=len(lists))

    def where(self, mask_W: np.ndarray) -> Flat:
        return Flat(values=self.values.filter(pa.array(mask_W)), owner_W=self.owner_W[mask_W], n_rows=self.n_rows)

    def count(self, mask_W: np.ndarray | None = None) -> np.ndarray:
        """Items per row (those under `mask_W` only, when given), int64[N]."""
        owner_W = self.owner_W if mask_W is None else self.owner_W[mask_W]
        return np.bincount(owner_W, minlength=self.n_rows)

    def sum(self, x_W: np.ndarray) -> np.ndarray:
        """Sum of `x_W` per row, float64[N]."""
        return np.bincount(self.owner_W, weights=x_W, minlength=self.n_rows)


def to_bool(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def to_int(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(array, 0).to_numpy(zero_copy_only=False), dtype=np.int64)


def segment_max(x_W: np.ndarray, owner_W: np.ndarray, n_rows: int) -> np.ndarray:
    """Max of `x_W` per row (0 for rows without items); `owner_W` must be ascending."""
    out_N = np.zeros(n_rows, dtype=x_W.dtype)
    if len(x_W):
        starts = np.flatnonzero(np.r_[True, owner_W[1:] != owner_W[:-1]])
        out_N[owner_W[starts]] = np.maximum.reduceat(x_W, starts)
    return out_N


def first_occurrence(keys_W: np.ndarray) -> np.ndarray:
    """Whether each key is the first of its equal keys (hash table in Arrow, O(W))."""
    ids_W = pc.dictionary_encode(pa.array(keys_W)).indices.to_numpy()
    is_first_W = np.ones(len(ids_W), dtype=bool)
    if len(ids_W) > 1:
        # ids are handed out 0, 1, 2, ... in order of appearance: new iff above every earlier id
        is_first_W[1:] = ids_W[1:] > np.maximum.accumulate(ids_W)[:-1]
    return is_first_W


def group_counts(keys_K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How many keys equal each uint64 key, and whether it is the first of them.

    One plain sort of `key's high bits | index` (numpy's vectorised sort is ~5x faster than
    argsort or Arrow's hash table here): equal keys end up adjacent, in index order. Keys that
    agree on their high 64 - log2(K) bits count as equal, so two different 64-bit hashes
    merge with probability ~K**2 / 2**(65 - log2(K)) per call (~1e-2 for K = 1e6).
    """
    K = len(keys_K)
    count_K, is_first_K = np.zeros(K, dtype=np.int64), np.zeros(K, dtype=bool)
    if K == 0:
        return count_K, is_first_K
    bits = np.uint64(max(1, (K - 1).bit_length()))
    packed_K = np.sort(((keys_K >> bits) << bits) | np.arange(K, dtype=np.uint64))
    index_K = (packed_K & ((np.uint64(1) << bits) - np.uint64(1))).astype(np.int64)
    group_K = packed_K >> bits
    starts = np.flatnonzero(np.r_[True, group_K[1:] != group_K[:-1]])
    sizes = np.diff(np.r_[starts, K])
    count_K[index_K] = np.repeat(sizes, sizes)
    is_first_K[index_K[starts]] = True
    return count_K, is_first_K


def row_keys(ids_W: np.ndarray, owner_W: np.ndarray) -> np.ndarray:
    """Exact uint64 key of (row, small id): equal only for equal items of the same row."""
    return (owner_W.astype(np.uint64) << np.uint64(32)) | ids_W.astype(np.uint64)


def word_hashes(words: Flat) -> np.ndarray:
    """A random uint64 per distinct word of the partition (fixed seed), uint64[W]."""
    ids_W = pc.dictionary_encode(words.values).indices.to_numpy()
    n_distinct = int(ids_W.max()) + 1 if len(ids_W) else 0
    table = np.random.default_rng(0).integers(0, np.iinfo(np.uint64).max, size=n_distinct, dtype=np.uint64,
                                             endpoint=True)
    return table[ids_W]


def extend_hashes(hash_K: np.ndarray, next_word_hash_K: np.ndarray) -> np.ndarray:
    """Polynomial hash of an n-gram from its (n-1)-gram prefix and last word (wraps mod 2**64)."""
    with np.errstate(over="ignore"):
        return hash_K * _HASH_BASE + next_word_hash_K


def mix_row(hash_G: np.ndarray, owner_G: np.ndarray) -> np.ndarray:
    """Key of (row, n-gram hash): n-grams of different rows never share a key (up to 2**-64)."""
    with np.errstate(over="ignore"):
        return hash_G ^ ((owner_G.astype(np.uint64) + np.uint64(1)) * _ROW_MIX)
