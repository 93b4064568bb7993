"""Sort-based unique: numpy 2.x's `np.unique` hashes large integer arrays and is ~50x slower
than a sort here (6.2 s against 0.1 s for 6.3M uint64 shingle keys)."""

from __future__ import annotations

import numpy as np


def unique_sorted(values: np.ndarray) -> np.ndarray:
    ordered = np.sort(values)
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if len(ordered) else ordered


def unique_pairs(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (first, second) pairs, sorted by first then second."""
    order = np.lexsort((second, first))
    first, second = first[order], second[order]
    distinct = np.r_[True, (first[1:] != first[:-1]) | (second[1:] != second[:-1])] if len(first) else order > 0
    return first[distinct], second[distinct]


def dense_ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct values sorted, each value's index among them): np.unique(return_inverse)."""
    distinct = unique_sorted(values)
    return distinct, np.searchsorted(distinct, values)
