"""Held-out documents: a share of a mixture's documents kept out of training, chosen by hash.

A document is held out when the hash of its `id` (its tokens, when it has no id) falls below
`fraction` of the hash range. The choice depends on nothing but the document, so the training
stream and the evaluation sets agree on it under any seed, world size or worker count, and a
document keeps its side when the corpus is tokenized again with another tokenizer (its id is
unchanged; bits per byte then compares the two runs).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

ID = "id"
_HASH_RANGE = 2**64


def _hash_unit(key: bytes) -> float:
    """A key's position in [0, 1), uniform over keys."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") / _HASH_RANGE


@dataclass(frozen=True)
class Holdout:
    """Which side of the hash split a reader takes: the held-out documents or the others."""

    fraction: float  # share of documents held out, in (0, 1)
    held_out: bool  # True: the held-out documents (evaluation); False: the rest (training)

    def __post_init__(self) -> None:
        if not 0 < self.fraction < 1:
            raise ValueError(f"holdout fraction must be between 0 and 1, not {self.fraction}")

    def is_held_out(self, ids: pa.Array, tokens: pa.ListArray) -> np.ndarray:
        """Boolean per document: held out. A document without an id is keyed by its token ids."""
        held = np.empty(len(ids), dtype=bool)
        for i, doc_id in enumerate(ids.to_pylist()):
            key = doc_id.encode() if doc_id is not None else tokens[i].values.to_numpy().tobytes()
            held[i] = _hash_unit(key) < self.fraction
        return held

    def mask(self, table: pa.Table, tokens_column: str) -> np.ndarray:
        """Rows of `table` (with `id` and `tokens_column`) on this side of the split."""
        held = self.is_held_out(table[ID].combine_chunks(), table[tokens_column].combine_chunks())
        return held if self.held_out else ~held
