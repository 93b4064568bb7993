"""Units of text (UTF-8 bytes or tokens), the rolling hash of every k-unit window, window contents.

Every unit knows the characters it came from (`char_start_U`, `char_end_U`, code-point offsets
into the document's text, as Python indexes a str): a byte maps to the character it is part of,
a token to the offsets `tokenizers` reports. A cut of units maps back to characters through them.

A window of k units u starting at unit i is hashed with the polynomial sum_t (u[i+t] + 1) *
B^(k-1-t) mod 2^64, kept rolling (one multiply-add per unit), then mixed (splitmix64) so that
its high bits spread evenly over the hash ranges of `curation.partitioned.range_partition`.
Hashes only route windows to partitions and prune singletons: repeats are confirmed on the
windows' exact contents, so a collision costs work, never a wrong cut.

Shapes: N documents, U units, W windows, C candidate windows, k units per window.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.partitioned import mix64

POLYNOMIAL_BASE = np.uint64(0x100000001B3)  # the FNV-1 64-bit prime, as in curation.fuzzy_dedup.shingles
_GATHER_ROWS = 1 << 16  # windows gathered at once by `window_contents` (bounds its k x 8-byte index matrix)


@dataclass(frozen=True)
class Units:
    """Units of N documents: document i holds values[offsets[i]:offsets[i + 1]]."""

    values_U: np.ndarray  # uint8 (bytes) or uint32 (token ids)
    offsets_N1: np.ndarray  # int64
    char_start_U: np.ndarray  # int64, offset of the unit's first character in its document
    char_end_U: np.ndarray  # int64, exclusive


def byte_units(texts: pa.Array | pa.ChunkedArray) -> Units:
    """UTF-8 bytes as units (zero-copy from the Arrow buffer); a null text has none."""
    strings = pc.fill_null(texts, "").cast(pa.large_string())
    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks()
    _, offsets_buffer, data_buffer = strings.buffers()
    offsets_N1 = np.frombuffer(offsets_buffer, np.int64)[strings.offset:strings.offset + len(strings) + 1]
    data = np.frombuffer(data_buffer, np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    values_U = data[offsets_N1[0]:offsets_N1[-1]]
    offsets_N1 = offsets_N1 - offsets_N1[0]
    # A byte that is not a continuation byte (10xxxxxx) starts a character.
    starts_cumulative = np.concatenate([[0], np.cumsum((values_U & 0xC0) != 0x80)])
    doc_first_char_N = starts_cumulative[offsets_N1[:-1]]
    char_start_U = starts_cumulative[1:] - 1 - np.repeat(doc_first_char_N, np.diff(offsets_N1))
    return Units(values_U, offsets_N1, char_start_U, char_start_U + 1)


@functools.lru_cache(maxsize=4)
def load_backend(path: str):  # noqa: ANN201 - a tokenizers.Tokenizer (imported lazily)
    """A `tokenizers` tokenizer from a tokenizer.json file or a directory holding one (offline;
    cached per process, so Dask tasks load it once)."""
    import tokenizers

    file = Path(path) / "tokenizer.json" if Path(path).is_dir() else Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"substring_dedup.tokenizer {path}: no tokenizer.json there")
    return tokenizers.Tokenizer.from_file(str(file))


def token_units(texts: pa.Array | pa.ChunkedArray, tokenizer: str) -> Units:
    """Token ids as units (no special tokens), with the tokenizer's character offsets."""
    strings = pc.fill_null(texts, "").to_pylist()
    encodings = load_backend(tokenizer).encode_batch(strings, add_special_tokens=False)
    ids = [np.asarray(e.ids, dtype=np.uint32) for e in encodings]
    spans = [np.asarray(e.offsets, dtype=np.int64).reshape(-1, 2) for e in encodings]
    offsets_N1 = np.concatenate([[0], np.cumsum([len(i) for i in ids])]).astype(np.int64)
    if not encodings:
        return Units(np.zeros(0, np.uint32), offsets_N1, np.zeros(0, np.int64), np.zeros(0, np.int64))
    spans_U2 = np.concatenate(spans)
    return Units(np.concatenate(ids), offsets_N1, spans_U2[:, 0].copy(), spans_U2[:, 1].copy())


UNITS_SCHEMA = pa.schema([("values", pa.large_list(pa.uint32())), ("char_start", pa.large_list(pa.int32())),
                          ("char_end", pa.large_list(pa.int32()))])


def units_to_arrow(units: Units) -> pa.Table:
    """Token units as list columns, one row per document (12 bytes a token), to store them."""
    offsets = pa.array(units.offsets_N1, pa.int64())
    return pa.Table.from_arrays([pa.LargeListArray.from_arrays(offsets, pa.array(column.astype(dtype)))
                                 for column, dtype in ((units.values_U, np.uint32), (units.char_start_U, np.int32),
                                                       (units.char_end_U, np.int32))], schema=UNITS_SCHEMA)


def units_from_arrow(table: pa.Table) -> Units:
    """The inverse of `units_to_arrow` (on a slice of its rows too)."""
    columns = [table[name].combine_chunks() for name in UNITS_SCHEMA.names]
    offsets = columns[0].offsets.to_numpy()
    values = [column.values.to_numpy()[offsets[0]:offsets[-1]] for column in columns]
    return Units(values[0], offsets - offsets[0], values[1].astype(np.int64), values[2].astype(np.int64))


@numba.njit(cache=True, nogil=True)
def _rolling_hashes(values_U: np.ndarray, offsets_N1: np.ndarray, k: int,
                    out_W: np.ndarray, out_doc_W: np.ndarray, out_pos_W: np.ndarray) -> None:
    """The polynomial hash of every window of k units inside one document, in order."""
    top_power = np.uint64(1)
    for _ in range(k):
        top_power *= POLYNOMIAL_BASE
    n_out = 0
    for doc in range(offsets_N1.shape[0] - 1):
        start = offsets_N1[doc]
        rolling = np.uint64(0)
        for i in range(start, offsets_N1[doc + 1]):
            rolling = rolling * POLYNOMIAL_BASE + (np.uint64(values_U[i]) + np.uint64(1))
            if i - start >= k:  # the unit leaving the window
                rolling -= (np.uint64(values_U[i - k]) + np.uint64(1)) * top_power
            if i - start + 1 >= k:
                out_W[n_out] = rolling
                out_doc_W[n_out] = doc
                out_pos_W[n_out] = i - start + 1 - k
                n_out += 1


def window_hashes(units: Units, k: int, hash_bits: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hash uint64, document int64, position int32) of every k-unit window. `hash_bits` < 64 keeps
    that many low bits of the hash (tests force collisions with it)."""
    windows = int(np.maximum(np.diff(units.offsets_N1) - k + 1, 0).sum())
    hashes_W = np.empty(windows, np.uint64)
    docs_W = np.empty(windows, np.int64)
    positions_W = np.empty(windows, np.int32)
    _rolling_hashes(units.values_U, units.offsets_N1, k, hashes_W, docs_W, positions_W)
    hashes_W = mix64(hashes_W)
    if hash_bits < 64:
        hashes_W &= np.uint64((1 << hash_bits) - 1)
    return hashes_W, docs_W, positions_W


def window_contents(units: Units, docs_C: np.ndarray, positions_C: np.ndarray, k: int) -> pa.Array:
    """The exact k units (their bytes) of each window: a fixed_size_binary(k * unit bytes) array."""
    width = k * units.values_U.itemsize
    starts_C = units.offsets_N1[docs_C] + positions_C
    out_CL = np.empty((len(starts_C), k), dtype=units.values_U.dtype)
    steps_k = np.arange(k)
    for begin in range(0, len(starts_C), _GATHER_ROWS):
        chunk = starts_C[begin:begin + _GATHER_ROWS]
        out_CL[begin:begin + len(chunk)] = units.values_U[chunk[:, None] + steps_k]
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(starts_C), [None, pa.py_buffer(out_CL)])


def content_groups(hashes_C: np.ndarray, contents: pa.FixedSizeBinaryArray) -> np.ndarray:
    """A group number per window, equal exactly when the contents are equal (byte for byte).

    Equal contents have equal hashes, so windows are grouped by hash and each compared with its
    neighbour in hash order (a linear scan); only the hash runs where contents differ (collisions)
    are grouped by content with a sort of their bytes.
    """
    if len(contents) == 0:
        return np.zeros(0, dtype=np.int64)
    width = contents.type.byte_width
    data = np.frombuffer(contents.buffers()[1], np.uint8)[contents.offset * width:(contents.offset + len(contents)) * width]
    data_CL = data.reshape(len(contents), width)
    order = np.argsort(hashes_C, kind="stable")
    sorted_hashes = hashes_C[order]
    run_start = np.ones(len(order), dtype=bool)
    run_start[1:] = sorted_hashes[1:] != sorted_hashes[:-1]
    run_C = np.cumsum(run_start) - 1
    differs = np.zeros(len(order), dtype=bool)  # from the previous window in hash order
    for begin in range(1, len(order), _GATHER_ROWS):
        rows = order[begin:begin + _GATHER_ROWS]
        differs[begin:begin + len(rows)] = np.any(data_CL[rows] != data_CL[order[begin - 1:begin - 1 + len(rows)]], axis=1)
    collided = np.flatnonzero(np.isin(run_C, run_C[differs & ~run_start]))
    within_run_C = np.zeros(len(order), dtype=np.int64)
    if len(collided):
        _, within = np.unique(np.ascontiguousarray(data_CL[order[collided]]).view(f"V{width}").reshape(-1),
                              return_inverse=True)
        within_run_C[collided] = within.reshape(-1)
    _, sorted_groups = np.unique(run_C * len(order) + within_run_C, return_inverse=True)
    groups = np.empty(len(order), dtype=np.int64)
    groups[order] = sorted_groups.reshape(-1)
    return groups
