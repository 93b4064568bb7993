"""MinHash signatures and LSH band keys for a whole partition at once (the first pass of fuzzy dedup).

Shingles are hashed with a polynomial rolling hash computed from prefix sums over the
partition's code points (no Python loop per shingle), mixed to 32 bits; signatures use
datasketch's classic permutation scheme, h'(x) = ((a*x + b) mod (2^61 - 1)) & (2^32 - 1), with
its seeded (a, b) draws (the only scheme before datasketch 2.0, `scheme="legacy"` since), so a
signature equals `datasketch.MinHash(num_perm, seed, scheme="legacy")` updated with the same
32-bit shingle hashes (tested). Defaults follow Nemotron-CC: 24-character shingles,
260 permutations as 20 bands x 13 rows, seed 42.

Shapes: N documents, C code points of the partition, S shingles, P permutations, K bands.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.exact_dedup import normalized_texts

MERSENNE_PRIME = np.uint64((1 << 61) - 1)
MAX_HASH = np.uint64((1 << 32) - 1)
_BASE = np.uint64(0x100000001B3)  # odd, so invertible modulo 2^64 (FNV-1 64-bit prime)
_SPACE = 32


@dataclass(frozen=True, kw_only=True)
class MinHashConfig:
    shingle: str = "char:24"  # "char:N" (character N-grams) or "word:N" (word N-grams)
    num_perm: int = 260
    bands: int = 20
    rows: int = 13
    seed: int = 42

    def __post_init__(self) -> None:
        kind, _, size = self.shingle.partition(":")
        if kind not in ("char", "word") or not size.isdigit() or int(size) < 1:
            raise ValueError(f"shingle must look like 'char:24' or 'word:5', got {self.shingle!r}")
        if self.bands * self.rows != self.num_perm:
            raise ValueError(f"bands x rows must equal num_perm: {self.bands} x {self.rows} != {self.num_perm}")

    @property
    def shingle_kind(self) -> str:
        return self.shingle.partition(":")[0]

    @property
    def shingle_size(self) -> int:
        return int(self.shingle.partition(":")[2])


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's (a, b) draws: a in [1, p), b in [0, p), interleaved from one RandomState."""
    generator = np.random.RandomState(seed)
    pairs = [(generator.randint(1, MERSENNE_PRIME, dtype=np.uint64),
              generator.randint(0, MERSENNE_PRIME, dtype=np.uint64)) for _ in range(num_perm)]
    a_P, b_P = np.array(pairs, dtype=np.uint64).T
    return a_P, b_P


def _powers(base: np.uint64, count: int) -> np.ndarray:
    """base^0 .. base^(count-1) modulo 2^64 (uint64 arithmetic wraps)."""
    out = np.empty(count, dtype=np.uint64)
    out[0] = 1
    if count > 1:
        out[1:] = base
        np.cumprod(out[1:], out=out[1:])
    return out


def _mix32(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, high 32 bits: spreads a polynomial hash over all bits."""
    with np.errstate(over="ignore"):
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return (h ^ (h >> np.uint64(31))) >> np.uint64(32)


def window_hashes(values_C: np.ndarray, starts_S: np.ndarray, lengths_S: np.ndarray) -> np.ndarray:
    """Polynomial hash sum_k v[s+k] * B^(len-1-k) mod 2^64 of every window, from prefix sums.

    With Q[i] = sum_{k<i} v[k] * B^-k, a window's hash is B^(s+len-1) * (Q[s+len] - Q[s]).
    """
    inverse = pow(int(_BASE), -1, 1 << 64)
    count = len(values_C) + 1
    with np.errstate(over="ignore"):
        prefix_Q = np.zeros(count, dtype=np.uint64)
        np.cumsum(values_C.astype(np.uint64) * _powers(np.uint64(inverse), count - 1), out=prefix_Q[1:])
        base_powers = _powers(_BASE, count)
        ends = starts_S + lengths_S
        return base_powers[ends - 1] * (prefix_Q[ends] - prefix_Q[starts_S])


def _windows(doc_starts_N: np.ndarray, doc_lengths_N: np.ndarray, size: int) -> tuple[np.ndarray, ...]:
    """Start, length and owner document of every size-`size` window inside each document.

    A document shorter than `size` (but not empty) is one window of its whole length.
    """
    counts_N = np.where(doc_lengths_N >= size, doc_lengths_N - size + 1, np.minimum(doc_lengths_N, 1))
    owner_S = np.repeat(np.arange(len(counts_N)), counts_N)
    first_S = np.repeat(np.cumsum(counts_N) - counts_N, counts_N)
    starts_S = doc_starts_N[owner_S] + (np.arange(len(owner_S)) - first_S)
    lengths_S = np.minimum(doc_lengths_N[owner_S], size)
    return starts_S, lengths_S, owner_S


def shingle_hashes(texts: pa.Array | pa.ChunkedArray, config: MinHashConfig) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of every shingle of every (normalised) text, and each shingle's document."""
    normalized = normalized_texts(texts)
    lengths_N = pc.utf8_length(normalized).to_numpy(zero_copy_only=False).astype(np.int64)
    joined = "".join(normalized.to_pylist())
    codes_C = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
    doc_starts_N = np.cumsum(lengths_N) - lengths_N
    size = config.shingle_size
    if config.shingle_kind == "char":
        starts_S, lengths_S, owner_S = _windows(doc_starts_N, lengths_N, size)
        return _mix32(window_hashes(codes_C, starts_S, lengths_S)).astype(np.uint32), owner_S
    # Words: the normalised text has single spaces between words and none at either end.
    spaces = np.flatnonzero(codes_C == _SPACE)
    nonempty = lengths_N > 0
    word_starts = np.sort(np.r_[doc_starts_N[nonempty], spaces + 1])
    word_ends = np.sort(np.r_[spaces, (doc_starts_N + lengths_N)[nonempty]])
    word_hash_W = _mix32(window_hashes(codes_C, word_starts, word_ends - word_starts))
    # An empty document starts where the next one does; "right" picks the later, non-empty one.
    word_owner_W = np.searchsorted(doc_starts_N, word_starts, "right") - 1
    words_N = np.bincount(word_owner_W, minlength=len(lengths_N))
    word_doc_starts_N = np.cumsum(words_N) - words_N
    starts_S, lengths_S, owner_S = _windows(word_doc_starts_N, words_N, size)
    return _mix32(window_hashes(word_hash_W, starts_S, lengths_S)).astype(np.uint32), owner_S


@numba.njit(cache=True, nogil=True)
def _permuted_minima(hashes_S: np.ndarray, owner_S: np.ndarray, a_P: np.ndarray, b_P: np.ndarray,
                     signature_NP: np.ndarray) -> None:
    """signature[owner, p] = min over a document's shingles of ((a_p * h + b_p) mod 2^64 mod M61) & (2^32 - 1).

    One fused loop: numpy needs nine passes over a (shingles x permutations) temporary for the
    same arithmetic; this runs 4-5x faster and allocates nothing. The modulo is a Mersenne fold
    (2^61 = 1 mod M61), exact like datasketch's `%`.
    """
    for s in range(hashes_S.shape[0]):
        h = np.uint64(hashes_S[s])
        row = signature_NP[owner_S[s]]
        for p in range(a_P.shape[0]):
            v = a_P[p] * h + b_P[p]
            folded = (v & MERSENNE_PRIME) + (v >> np.uint64(61))
            if folded >= MERSENNE_PRIME:
                folded -= MERSENNE_PRIME
            folded &= MAX_HASH
            if folded < row[p]:
                row[p] = folded


def signatures(texts: pa.Array | pa.ChunkedArray, config: MinHashConfig = MinHashConfig()) -> np.ndarray:
    """uint32[N, P] MinHash signatures; an empty text gets datasketch's empty value, 2^32 - 1."""
    return signatures_of_shingles(*shingle_hashes(texts, config), len(texts), config)


def signatures_of_shingles(hashes_S: np.ndarray, owner_S: np.ndarray, n_docs: int,
                           config: MinHashConfig = MinHashConfig()) -> np.ndarray:
    """Signatures from `shingle_hashes` output (shingles of document i have owner i)."""
    a_P, b_P = permutations(config.num_perm, config.seed)
    signature_NP = np.full((n_docs, config.num_perm), MAX_HASH, dtype=np.uint64)
    _permuted_minima(hashes_S, owner_S.astype(np.int64), a_P, b_P, signature_NP)
    return signature_NP.astype(np.uint32)


def band_keys(signature_NP: np.ndarray, config: MinHashConfig = MinHashConfig(), *, rows: int | None = None,
              band_offset: int = 0) -> np.ndarray:
    """uint64[N, K] keys: documents sharing a key in any band are LSH candidates.

    By default the config's bands x rows; with `rows`, as many bands of that many rows as the
    signature holds (a second banding of the same signature, numbered from `band_offset`).
    """
    rows = rows or config.rows
    bands = config.bands if rows == config.rows else signature_NP.shape[1] // rows
    rows_NKR = signature_NP[:, :bands * rows].reshape(len(signature_NP), bands, rows).astype(np.uint64)
    with np.errstate(over="ignore"):
        powers_R = _powers(_BASE, rows)[::-1]
        keys_NK = (rows_NKR * powers_R).sum(axis=2, dtype=np.uint64)
        # The band index is mixed in so equal rows in different bands do not collide.
        keys_NK += np.arange(band_offset, band_offset + bands, dtype=np.uint64)
        return _mix32(keys_NK) | (_mix32(keys_NK ^ np.uint64(0x9E3779B97F4A7C15)) << np.uint64(32))
