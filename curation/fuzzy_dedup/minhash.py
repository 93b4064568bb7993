"""MinHash signatures and LSH band keys for a whole batch of shingle sets at once.

Signatures use datasketch's classic permutation scheme, h'(x) = ((a*x + b) mod (2^61 - 1)) &
(2^32 - 1), with its seeded (a, b) draws (the only scheme before datasketch 2.0,
`scheme="legacy"` since), so a signature equals `datasketch.MinHash(num_perm, seed,
scheme="legacy")` updated with the same 32-bit shingle hashes (tested). Defaults follow
Nemotron-CC: 24-character shingles, 260 permutations as 20 bands x 13 rows, seed 42.

Shapes: N documents, S shingles, P permutations, K bands, R rows per band.
"""

from __future__ import annotations

import numba
import numpy as np

from curation.fuzzy_dedup.config import MinHashConfig
from curation.fuzzy_dedup.shingles import POLYNOMIAL_BASE, ShingleSets, mix32

MERSENNE_PRIME = np.uint64((1 << 61) - 1)
MAX_HASH = np.uint64((1 << 32) - 1)


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's (a, b) draws: a in [1, p), b in [0, p), interleaved from one RandomState."""
    generator = np.random.RandomState(seed)
    pairs = [(generator.randint(1, MERSENNE_PRIME, dtype=np.uint64),
              generator.randint(0, MERSENNE_PRIME, dtype=np.uint64)) for _ in range(num_perm)]
    a_P, b_P = np.array(pairs, dtype=np.uint64).T
    return a_P, b_P


@numba.njit(cache=True, nogil=True)
def _permuted_minima(values_S: np.ndarray, offsets_N1: np.ndarray, a_P: np.ndarray, b_P: np.ndarray,
                     signature_NP: np.ndarray) -> None:
    """signature[n, p] = min over set n of ((a_p * h + b_p) mod 2^64 mod M61) & (2^32 - 1).

    The modulo is a Mersenne fold (2^61 = 1 mod M61), exact like datasketch's `%`: with
    t = (v & M61) + (v >> 61) <= M61 + 7, t mod M61 is t - M61 when t + 1 reaches 2^61,
    and subtracting M61 = 2^61 - 1 only adds 1 to the low 32 bits we keep. Branch-free, so
    the inner loop over a document's shingles (one permutation at a time, a min reduction)
    vectorises.
    """
    for n in range(offsets_N1.shape[0] - 1):
        values = values_S[offsets_N1[n]:offsets_N1[n + 1]]
        for p in range(a_P.shape[0]):
            a, b = a_P[p], b_P[p]
            smallest = np.uint32(MAX_HASH)
            for s in range(values.shape[0]):  # (indexing, not iterating, lets LLVM vectorise it)
                v = a * np.uint64(values[s]) + b
                t = (v & MERSENNE_PRIME) + (v >> np.uint64(61))
                smallest = min(smallest, np.uint32((t + ((t + np.uint64(1)) >> np.uint64(61))) & MAX_HASH))
            signature_NP[n, p] = smallest


def signatures(sets: ShingleSets, config: MinHashConfig = MinHashConfig()) -> np.ndarray:
    """uint32[N, P] MinHash signatures; an empty set gets datasketch's empty value, 2^32 - 1."""
    a_P, b_P = permutations(config.num_perm, config.seed)
    signature_NP = np.empty((len(sets.offsets) - 1, config.num_perm), dtype=np.uint32)
    _permuted_minima(sets.values, sets.offsets, a_P, b_P, signature_NP)
    return signature_NP


def _powers(base: np.uint64, count: int) -> np.ndarray:
    """base^0 .. base^(count-1) modulo 2^64 (uint64 arithmetic wraps)."""
    out = np.empty(count, dtype=np.uint64)
    out[0] = 1
    if count > 1:
        out[1:] = base
        np.cumprod(out[1:], out=out[1:])
    return out


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
        powers_R = _powers(POLYNOMIAL_BASE, rows)[::-1]
        keys_NK = (rows_NKR * powers_R).sum(axis=2, dtype=np.uint64)
        # The band index is mixed in so equal rows in different bands do not collide.
        keys_NK += np.arange(band_offset, band_offset + bands, dtype=np.uint64)
        return mix32(keys_NK) | (mix32(keys_NK ^ np.uint64(0x9E3779B97F4A7C15)) << np.uint64(32))
