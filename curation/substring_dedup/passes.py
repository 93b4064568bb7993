"""The global passes of substring dedup, joined by key-partitioned files under the stage directory.

    _windows/part-SSSSS.arrow     pass 1, per shard: the distinct hashes of its k-unit windows,
                                  sorted, each with a flag: seen twice inside the shard
    _units/part-SSSSS.arrow       pass 1, token unit only: (id, values, char_start, char_end) per
                                  row, so that passes 3 and 5 do not tokenise again
    _candidates/part-PPPPP.arrow  pass 2, per hash range (a key range of every shard's sorted
                                  hashes): hashes seen twice in the corpus, partitioned by each
                                  shard that holds them
    _contents/part-SSSSS.arrow    pass 3, per shard: its windows whose hash is a candidate (hashes
                                  computed again: cheaper than storing every window's address),
                                  with their exact k units (`content`), partitioned by hash range
    _confirmed/part-PPPPP.arrow   pass 4, per hash range: windows whose content repeats (all
                                  copies, or all but the first with keep_first), by shard
    spans.parquet/part-SSSSS.parquet  pass 5, per shard: (row, id, start, end) character spans
                                  to cut, merged and sorted; the cut itself is `cut.SpanCutter`

`doc` is `fuzzy_dedup.lsh.doc_index(shard, row)`: sorting by it is corpus order. Every pass is
a map over shards or hash ranges through `mapper` (the cluster's, or `local_mapper`), skips an
output file that exists, and returns a count (or a digest) to the driver, which holds O(shards
+ partitions) values. Memory per task: pass 1 holds one shard's window hashes (8 bytes per unit,
9 on disk per distinct window); pass 2 one hash range of every shard's distinct hashes; pass 3
one shard's candidate hashes, one batch's windows, and the shard's candidates with their contents (k
unit bytes each, the only place contents exist: verifying hashes by a second hash would not be
exact); pass 4 one hash range of those; pass 5 one shard's confirmed windows. Passes 2 and 4
shrink with more `partitions`. Byte units are read again from the input in passes 3 and 5;
token units are stored once (12 bytes a token, memory-mapped): tokenising is the costliest step.

Windows are defined on whole documents, so a repeat is found whatever the shard layout.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation.fuzzy_dedup.lsh import doc_index, doc_row, doc_shard, key_range
from curation.io.readers import readable_batches
from curation.io.writers import write_arrow_atomic, write_table_atomic
from curation.partitioned import (
    column_array, local_mapper, range_partition, shared_args, read_mapped, read_partition, write_partitioned,
)
from curation.schema import ID, TEXT
from curation.substring_dedup.config import SubstringDedupConfig
from curation.substring_dedup.units import (
    UNITS_SCHEMA, Units, byte_units, content_groups, token_units, units_from_arrow, units_to_arrow, window_contents,
    window_hashes,
)

log = logging.getLogger("ccforge")

HASH, DOC, POS, CONTENT = "hash", "doc", "pos", "content"
ROW, START, END = "row", "start", "end"
REPEATED = "repeated"
DISTINCT_SCHEMA = pa.schema([(HASH, pa.uint64()), (REPEATED, pa.bool_())])
CANDIDATES_SCHEMA = pa.schema([(HASH, pa.uint64())])
WINDOWS_SCHEMA = pa.schema([(HASH, pa.uint64()), (DOC, pa.int64()), (POS, pa.int32())])
CONFIRMED_SCHEMA = pa.schema([(DOC, pa.int64()), (POS, pa.int32())])
SPANS_SCHEMA = pa.schema([(ROW, pa.int64()), (ID, pa.string()), (START, pa.int64()), (END, pa.int64())])
SPANS_DIR = "spans.parquet"


def spans_path(work_dir: str | Path, shard: int) -> Path:
    return Path(work_dir) / SPANS_DIR / f"part-{shard:05d}.parquet"


def substring_spans(inputs: list[str], work_dir: str | Path, config: SubstringDedupConfig, *,
                    mapper: Callable[..., list] = local_mapper, batch_rows: int = 1000, strict: bool = False,
                    progress: Callable[[str], None] = log.info, hash_bits: int = 64) -> list[str]:
    """Passes 1-5 over the input shards; returns each shard's spans digest (its decision)."""
    work = Path(work_dir)
    shards = len(inputs)
    parts = config.partitions or max(1, shards)
    shard_ids = list(range(shards))
    window_paths = [str(work / "_windows" / f"part-{s:05d}.arrow") for s in shard_ids]
    windows = mapper(_hash_windows, inputs, shard_ids, window_paths, *shared_args(shards, config, batch_rows, strict,
                                                                          hash_bits))
    progress(f"substring-dedup: {sum(windows)} distinct windows of {config.window} units in {shards} shards")
    candidate_paths = [str(work / "_candidates" / f"part-{p:05d}.arrow") for p in range(parts)]
    candidates = mapper(_candidate_hashes, list(range(parts)), candidate_paths, *shared_args(parts, window_paths, parts))
    progress(f"substring-dedup: {sum(candidates)} (hash, shard) pairs seen twice or more")
    content_paths = [str(work / "_contents" / f"part-{s:05d}.arrow") for s in shard_ids]
    contents = mapper(_window_contents, inputs, shard_ids, content_paths,
                      *shared_args(shards, candidate_paths, config, parts, batch_rows, strict, hash_bits))
    progress(f"substring-dedup: {sum(contents)} windows share a hash with another")
    confirmed_paths = [str(work / "_confirmed" / f"part-{p:05d}.arrow") for p in range(parts)]
    confirmed = mapper(_confirmed_windows, list(range(parts)), confirmed_paths,
                       *shared_args(parts, content_paths, config.keep_first))
    progress(f"substring-dedup: {sum(confirmed)} windows repeat exactly")
    return mapper(_shard_spans, inputs, shard_ids, *shared_args(shards, confirmed_paths, str(work), config, batch_rows,
                                                         strict))


def _shard_units(path: str, config: SubstringDedupConfig, batch_rows: int, strict: bool,
                 stored: str | None = None) -> Iterator[tuple[int, pa.Table, Units]]:
    """(first row, batch, units) of each batch of a shard; rows count as `curation.shards` does.
    Token units come from the `stored` file of pass 1 when given (tokenising once, not thrice)."""
    if config.tokenizer is not None and stored is not None:
        table = read_mapped(stored)
        for first_row in range(0, table.num_rows, batch_rows):
            batch = table.slice(first_row, batch_rows)
            yield first_row, batch.select([ID]), units_from_arrow(batch)
        return
    first_row = 0
    for raw in readable_batches(path, batch_rows=batch_rows, strict=strict):
        texts = raw.table[TEXT]
        units = token_units(texts, config.tokenizer) if config.tokenizer is not None else byte_units(texts)
        yield first_row, raw.table, units
        first_row += raw.table.num_rows


def _units_path(work_dir: str | Path, shard: int) -> str:
    """Where pass 1 stores a shard's token units (beside the passes' own directories)."""
    return str(Path(work_dir) / "_units" / f"part-{shard:05d}.arrow")


def _rows_written(path: str) -> int:
    return read_mapped(path).num_rows


# ----------------------------------------------------------------------- pass 1: window hashes


def _hash_windows(path: str, shard: int, out_path: str, config: SubstringDedupConfig, batch_rows: int,
                  strict: bool, hash_bits: int) -> int:
    """The distinct window hashes of one shard, sorted (the key order of pass 2's ranges)."""
    if not Path(out_path).exists():
        hashes, stored = [], []
        for _, batch, units in _shard_units(path, config, batch_rows, strict):
            hashes.append(window_hashes(units, config.window, hash_bits)[0])
            if config.tokenizer is not None:
                stored.append(units_to_arrow(units).add_column(0, ID, batch[ID].cast(pa.string())))
        if config.tokenizer is not None:
            schema = UNITS_SCHEMA.insert(0, pa.field(ID, pa.string()))
            write_arrow_atomic(pa.concat_tables(stored).combine_chunks() if stored else schema.empty_table(),
                               _units_path(Path(out_path).parents[1], shard))
        all_hashes = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
        del hashes  # the shard's hashes are the task's memory: hold them once, sort them in place
        distinct, repeated = _distinct(all_hashes)
        write_arrow_atomic(pa.table({HASH: distinct, REPEATED: repeated}, schema=DISTINCT_SCHEMA), out_path)
    return _rows_written(out_path)


def _distinct(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct hashes, whether each occurs more than once); sorts `hashes` in place."""
    hashes.sort()
    ordered = hashes
    first = np.ones(len(ordered), dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    starts = np.flatnonzero(first)
    return ordered[starts], np.diff(np.r_[starts, len(ordered)]) >= 2


# ------------------------------------------------------------------ pass 2: hashes seen twice


def _candidate_hashes(part: int, out_path: str, window_paths: list[str], parts: int) -> int:
    """The hashes of one key range seen twice in the corpus (in two shards, or twice in one),
    written once for every shard that holds them."""
    if not Path(out_path).exists():
        hashes, shards, repeated = [], [], []
        for shard, path in enumerate(window_paths):
            table = read_mapped(path)
            keys = column_array(table, HASH).to_numpy()
            rows = key_range(keys, part, parts)
            hashes.append(keys[rows])
            # Slice before converting: bits to bytes of the whole column would cost every task a full
            # pass over every shard's file (quadratic in shards; seen at 1M documents).
            flags = column_array(table, REPEATED).slice(rows.start, rows.stop - rows.start)
            repeated.append(flags.to_numpy(zero_copy_only=False))
            shards.append(np.full(rows.stop - rows.start, shard, dtype=np.int64))
        hashes_H, shards_H, repeated_H = (np.concatenate(a) for a in (hashes, shards, repeated))
        order = np.argsort(hashes_H, kind="stable")
        sorted_hashes = hashes_H[order]
        in_two_shards = np.zeros(len(order), dtype=bool)
        same_as_next = sorted_hashes[1:] == sorted_hashes[:-1]
        in_two_shards[1:] |= same_as_next
        in_two_shards[:-1] |= same_as_next
        chosen = order[in_two_shards | repeated_H[order]]
        write_partitioned(pa.table({HASH: hashes_H[chosen]}, schema=CANDIDATES_SCHEMA), shards_H[chosen], out_path)
    return _rows_written(out_path)


# ------------------------------------------------------------------ pass 3: exact contents


def _window_contents(path: str, shard: int, out_path: str, candidate_paths: list[str],
                     config: SubstringDedupConfig, parts: int, batch_rows: int, strict: bool, hash_bits: int) -> int:
    """The shard's windows whose hash is a candidate, with their contents, by hash range."""
    if not Path(out_path).exists():
        wanted = np.sort(column_array(read_partition(candidate_paths, shard), HASH).to_numpy())
        tables = []
        for first_row, _, units in _shard_units(path, config, batch_rows, strict,
                                                _units_path(Path(out_path).parents[1], shard)):
            hashes, docs, positions = window_hashes(units, config.window, hash_bits)
            found = np.minimum(np.searchsorted(wanted, hashes), max(len(wanted) - 1, 0))
            chosen = np.flatnonzero(wanted[found] == hashes) if len(wanted) else np.zeros(0, np.int64)
            if len(chosen) == 0:
                continue
            tables.append(pa.table({
                HASH: hashes[chosen], DOC: doc_index(shard, first_row + docs[chosen]), POS: positions[chosen],
                CONTENT: window_contents(units, docs[chosen], positions[chosen].astype(np.int64), config.window)}))
        schema = WINDOWS_SCHEMA.append(pa.field(CONTENT, pa.binary(config.window * _unit_bytes(config))))
        table = pa.concat_tables(tables).combine_chunks() if tables else schema.empty_table()
        write_partitioned(table, range_partition(column_array(table, HASH).to_numpy(), parts), out_path)
    return _rows_written(out_path)


def _unit_bytes(config: SubstringDedupConfig) -> int:
    return 4 if config.tokenizer is not None else 1


# ------------------------------------------------------------- pass 4: repeats, verified


def _confirmed_windows(part: int, out_path: str, content_paths: list[str], keep_first: bool) -> int:
    if not Path(out_path).exists():
        windows = read_partition(content_paths, part)
        groups = content_groups(column_array(windows, HASH).to_numpy(), column_array(windows, CONTENT))
        docs = column_array(windows, DOC).to_numpy()
        positions = column_array(windows, POS).to_numpy()
        order = np.lexsort((positions, docs, groups))  # by content, then corpus order
        sorted_groups = groups[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = sorted_groups[1:] != sorted_groups[:-1]
        counts = np.bincount(groups, minlength=int(groups.max(initial=-1)) + 1)
        cut = counts[sorted_groups] >= 2
        if keep_first:
            cut &= ~first
        chosen = order[cut]
        confirmed = pa.table({DOC: docs[chosen], POS: positions[chosen]}, schema=CONFIRMED_SCHEMA)
        write_partitioned(confirmed, doc_shard(docs[chosen]), out_path)
    return _rows_written(out_path)


# ------------------------------------------------------------------------ pass 5: spans


def _shard_spans(path: str, shard: int, confirmed_paths: list[str], work_dir: str, config: SubstringDedupConfig,
                 batch_rows: int, strict: bool) -> str:
    out_path = spans_path(work_dir, shard)
    if not out_path.exists():
        confirmed = read_partition(confirmed_paths, shard).sort_by([(DOC, "ascending"), (POS, "ascending")])
        rows = doc_row(column_array(confirmed, DOC).to_numpy())
        positions = column_array(confirmed, POS).to_numpy().astype(np.int64)
        tables = []
        for first_row, batch, units in _shard_units(path, config, batch_rows, strict, _units_path(work_dir, shard)):
            begin, end = np.searchsorted(rows, [first_row, first_row + batch.num_rows])
            if begin == end:
                continue
            docs, starts, ends = char_spans(units, rows[begin:end] - first_row, positions[begin:end], config.window)
            tables.append(pa.table({ROW: first_row + docs, ID: batch[ID].take(pa.array(docs)).cast(pa.string()),
                                    START: starts, END: ends}, schema=SPANS_SCHEMA))
        write_table_atomic(pa.concat_tables(tables) if tables else SPANS_SCHEMA.empty_table(), out_path)
    return spans_digest(pq.read_table(out_path, columns=[ROW, START, END]))


def char_spans(units: Units, docs_C: np.ndarray, positions_C: np.ndarray,
               k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(doc, start, end) character spans covered by the windows (doc, position) of k units,
    sorted by document and start (windows sorted the same way).

    Each maximal run of cut units is cut from its first unit's start to its last unit's end (so a
    partly covered character is cut whole, and text a tokenizer leaves between two cut tokens
    goes too); runs that then overlap or touch are merged.
    """
    # Unit indexes with a gap after each document, so that no run spans two documents.
    starts = units.offsets_N1[docs_C] + docs_C + positions_C
    docs, unit_starts, unit_ends = _merge_intervals(docs_C, starts, starts + k)
    char_starts = units.char_start_U[unit_starts - docs] + (docs << 32)
    char_ends = units.char_end_U[unit_ends - 1 - docs] + (docs << 32)
    order = np.argsort(char_starts, kind="stable")  # offsets of tokens need not grow with them
    return _merge_intervals(docs[order], char_starts[order], char_ends[order], strip=True)


def _merge_intervals(docs: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                     strip: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Union of [start, end) intervals sorted by start: overlapping or touching ones merge.
    With `strip`, the document's `doc << 32` is taken off the merged offsets and empty spans dropped."""
    if len(starts) == 0:
        return docs, starts, ends
    reach = np.maximum.accumulate(ends)
    new_run = np.ones(len(starts), dtype=bool)
    new_run[1:] = starts[1:] > reach[:-1]
    run_first = np.flatnonzero(new_run)
    run_last = np.r_[run_first[1:], len(starts)] - 1
    docs, starts, ends = docs[run_first], starts[run_first], reach[run_last]
    if strip:
        starts, ends = starts - (docs << 32), ends - (docs << 32)
        nonempty = ends > starts
        docs, starts, ends = docs[nonempty], starts[nonempty], ends[nonempty]
    return docs, starts, ends


def spans_digest(spans: pa.Table) -> str:
    """A digest of one shard's spans (its decision: a shard whose spans change is cut again)."""
    digest = hashlib.sha256()
    for name in (ROW, START, END):
        digest.update(np.ascontiguousarray(spans[name].to_numpy(), dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]
