"""Fuzzy dedup on Dask: signatures per shard, LSH buckets by key range, verification, components.

Working files live under the stage directory and make every pass resumable:

    _minhash/bands-00003.arrow     (band_key, doc) of shard 3, sorted by key (memory-mapped)
    _minhash/ids-00003.parquet     (doc, id) of shard 3
    _edges.parquet                 candidate edges from the LSH buckets
    _minhash/shingles-00003.arrow  shingle sets of shard 3's documents (verify on; memory-mapped)
    _verified_edges.parquet        candidate edges with their exact Jaccard
    duplicates.parquet             id, kept_id, component, jaccard, shard, row per removed doc

Memory per worker task is bounded by one batch (pass 1), one key range of the band rows
(pass 2), the sets of the pairs it verifies or one batch (filtering); the driver holds the
candidate edges only (see `curation.fuzzy_dedup.clusters` for the bound).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from distributed import Client

from curation.exact_dedup import KEPT_ID, ROW, SHARD
from curation.fuzzy_dedup.clusters import cluster
from curation.fuzzy_dedup.config import FuzzyDedupConfig
from curation.fuzzy_dedup.jaccard import pair_jaccard
from curation.fuzzy_dedup.lsh import (
    BAND_KEY, BANDS_SCHEMA, DOC, DOC_A, DOC_B, EDGES_SCHEMA, band_table, bucket_edges, doc_index, doc_row, doc_shard,
    key_range,
)
from curation.fuzzy_dedup.minhash import signatures
from curation.fuzzy_dedup.shingles import ShingleSets, shingle_sets
from curation.fuzzy_dedup.sorting import unique_pairs
from curation.io.readers import readable_batches
from curation.io.writers import write_arrow_atomic, write_json_atomic, write_table_atomic
from curation.schema import ID, TEXT
from curation.stage import RowDropFilter, StageStats
from flows.engine import StageRun, map_shards, drop_decisions, gather_per_input, run_resumable

log = logging.getLogger("ccforge")

COMPONENT = "component"
JACCARD = "jaccard"
SHINGLES = "shingles"
DUPLICATES_SCHEMA = pa.schema([(ID, pa.string()), (KEPT_ID, pa.string()), (COMPONENT, pa.int64()),
                               (JACCARD, pa.float32()), (SHARD, pa.int32()), (ROW, pa.int64())])
IDS_SCHEMA = pa.schema([(DOC, pa.int64()), (ID, pa.string())])
SHINGLES_SCHEMA = pa.schema([(DOC, pa.int64()), (SHINGLES, pa.large_list(pa.uint32()))])


def run_fuzzy_dedup(client: Client, run: StageRun, config: FuzzyDedupConfig,
                    progress: Callable[[str], None] = log.info) -> StageStats:
    """All passes over `run.inputs`; the kept rows of shard i go to part-0000i.parquet."""
    return run_resumable(run, lambda: _fuzzy_dedup_passes(client, run, config, progress), progress)


def _fuzzy_dedup_passes(client: Client, run: StageRun, config: FuzzyDedupConfig,
                        progress: Callable[[str], None]) -> StageStats:
    work = run.output_dir
    paths = [path for path, _ in run.inputs]
    count = len(paths)
    minhash_dir = work / "_minhash"
    signatures = gather_per_input(client, run, _minhash_shard, list(range(count)), [str(minhash_dir)] * count,
                                  [config] * count, [run.batch_rows] * count, [run.strict] * count)
    band_paths = [bands for bands, _ in signatures]
    progress(f"{run.name}: signatures of {count} shards")

    edges_path = work / "_edges.parquet"
    if not edges_path.exists():
        write_table_atomic(_candidate_edges(client, band_paths), edges_path)
    candidates = pq.read_table(edges_path)
    progress(f"{run.name}: {candidates.num_rows} candidate pairs from the LSH buckets")

    summary: dict = {"candidate_pairs": candidates.num_rows}
    if config.verify:
        verified_path = work / "_verified_edges.parquet"
        if not verified_path.exists():
            jaccard = _jaccard_by_shard_pair(client, candidates[DOC_A].to_numpy(), candidates[DOC_B].to_numpy(),
                                             _shingle_paths(minhash_dir, count))
            write_table_atomic(candidates.append_column(JACCARD, pa.array(jaccard, pa.float32())), verified_path)
        edges = pq.read_table(verified_path)
        edges = edges.filter(pc.greater_equal(edges[JACCARD], config.threshold))
        progress(f"{run.name}: {edges.num_rows} pairs at Jaccard >= {config.threshold}")
        summary["verified_pairs"] = edges.num_rows
    else:
        edges = candidates

    duplicates_path = work / "duplicates.parquet"
    if not duplicates_path.exists():
        duplicates = _duplicates(client, edges, work, count, config, summary)
        write_table_atomic(duplicates, duplicates_path)
        write_json_atomic(summary, work / "clusters.json")
    progress(f"{run.name}: {pq.ParquetFile(duplicates_path).metadata.num_rows} near-duplicates to remove")
    makers = [functools.partial(load_fuzzy_filter, str(duplicates_path), i) for i in range(count)]
    return map_shards(client, run, makers, progress, drop_decisions(duplicates_path, count))


def load_fuzzy_filter(duplicates_path: str, shard: int) -> RowDropFilter:
    table = pq.read_table(duplicates_path, columns=[ROW], filters=[(SHARD, "==", shard)])
    return RowDropFilter("fuzzy-dedup", "fuzzy_duplicate", table[ROW].to_numpy())


# ------------------------------------------------------------------------ pass 1: signatures


def _minhash_shard(path: str, shard: int, out_dir: str, config: FuzzyDedupConfig,
                   batch_rows: int, strict: bool) -> tuple[str, str]:
    """Band rows (sorted by key) and ids of one shard; with verification on, also every document's
    shingle set (4 bytes per distinct shingle: cheaper than reading and hashing the text again)."""
    bands_path = Path(out_dir) / f"bands-{shard:05d}.arrow"
    ids_path = Path(out_dir) / f"ids-{shard:05d}.parquet"
    sets_path = Path(out_dir) / f"shingles-{shard:05d}.arrow"
    if not (bands_path.exists() and ids_path.exists() and (sets_path.exists() or not config.verify)):
        bands, ids, sets, first_row = [], [], [], 0
        for raw in readable_batches(path, batch_rows=batch_rows, strict=strict):
            n_docs = raw.table.num_rows
            docs = doc_index(shard, np.arange(first_row, first_row + n_docs))
            first_row += n_docs
            shingles = shingle_sets(raw.table[TEXT], config.shingle)
            bands.append(band_table(signatures(shingles, config.minhash), docs, config.minhash,
                                    config.active_recall_rows))
            ids.append(pa.table({DOC: docs, ID: raw.table[ID].cast(pa.string())}, schema=IDS_SCHEMA))
            if config.verify:
                sets.append(pa.table({DOC: docs, SHINGLES: shingles.to_arrow()}, schema=SHINGLES_SCHEMA))
        if config.verify:
            write_arrow_atomic(pa.concat_tables(sets).combine_chunks() if sets else SHINGLES_SCHEMA.empty_table(),
                               sets_path)
        write_table_atomic(pa.concat_tables(ids) if ids else IDS_SCHEMA.empty_table(), ids_path)
        band_rows = pa.concat_tables(bands) if bands else BANDS_SCHEMA.empty_table()
        write_arrow_atomic(band_rows.sort_by(BAND_KEY).combine_chunks(), bands_path)
    return str(bands_path), str(ids_path)


# ----------------------------------------------------------------- pass 2: buckets to edges


def _candidate_edges(client: Client, band_paths: list[str]) -> pa.Table:
    """One task per key range (as many as shards) takes its buckets' rows from every shard."""
    parts = len(band_paths)
    futures = client.map(_key_range_edges, range(parts), [band_paths] * parts, [parts] * parts, pure=False)
    edges = client.gather(futures)
    # A pair that shares several bands comes from several key ranges.
    doc_a, doc_b = unique_pairs(np.concatenate([a for a, _ in edges]), np.concatenate([b for _, b in edges]))
    return pa.table({DOC_A: doc_a, DOC_B: doc_b}, schema=EDGES_SCHEMA)


def _key_range_edges(part: int, band_paths: list[str], parts: int) -> tuple[np.ndarray, np.ndarray]:
    keys, docs = [], []
    for path in band_paths:
        bands = _read_mapped(path)
        shard_keys = _column(bands, BAND_KEY).to_numpy()
        rows = key_range(shard_keys, part, parts)
        keys.append(shard_keys[rows])
        docs.append(_column(bands, DOC).to_numpy()[rows])
    return bucket_edges(np.concatenate(keys), np.concatenate(docs))


def _read_mapped(path: str) -> pa.Table:
    """An Arrow IPC file, memory-mapped: only the pages a task touches are read."""
    return pa.ipc.open_file(pa.memory_map(path)).read_all()


def _column(table: pa.Table, name: str) -> pa.Array:
    """One column as one array; zero-copy for the single record batch our files hold."""
    column = table[name]
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


# ------------------------------------------------------------------- pass 3: verification


def _jaccard_by_shard_pair(client: Client, doc_a: np.ndarray, doc_b: np.ndarray,
                           shingle_paths: dict[int, str]) -> np.ndarray:
    """Exact Jaccard of every pair; one task per (shard of a, shard of b) block of pairs."""
    jaccard = np.zeros(len(doc_a), dtype=np.float32)
    blocks = doc_shard(doc_a) * (1 << 31) + doc_shard(doc_b)
    futures = {}
    order = np.argsort(blocks, kind="stable")
    for members in np.split(order, np.flatnonzero(np.diff(blocks[order])) + 1):
        if len(members) == 0:
            continue
        shard_a, shard_b = divmod(int(blocks[members[0]]), 1 << 31)
        futures[client.submit(_verify_block, doc_a[members], doc_b[members], shingle_paths[shard_a],
                              shingle_paths[shard_b], pure=False)] = members
    for future, members in futures.items():
        jaccard[members] = future.result()
    return jaccard


def _shingle_paths(minhash_dir: Path, count: int) -> dict[int, str]:
    return {shard: str(minhash_dir / f"shingles-{shard:05d}.arrow") for shard in range(count)}


def _load_shingles(path: str) -> tuple[np.ndarray, ShingleSets]:
    table = _read_mapped(path)
    return _column(table, DOC).to_numpy(), ShingleSets.from_arrow(_column(table, SHINGLES))


def _verify_block(doc_a: np.ndarray, doc_b: np.ndarray, path_a: str, path_b: str) -> np.ndarray:
    docs_a, sets_a = _load_shingles(path_a)
    docs_b, sets_b = (docs_a, sets_a) if path_b == path_a else _load_shingles(path_b)
    return pair_jaccard(sets_a, np.searchsorted(docs_a, doc_a), sets_b, np.searchsorted(docs_b, doc_b))


# ------------------------------------------------------------------ pass 4: components


def _duplicates(client: Client, edges: pa.Table, work: Path, count: int, config: FuzzyDedupConfig,
                summary: dict) -> pa.Table:
    """One row per removed document: its id, its component's kept id and their Jaccard."""
    clusters = cluster(edges[DOC_A].to_numpy(), edges[DOC_B].to_numpy())
    removed, kept = clusters.docs[clusters.removed], clusters.kept[clusters.removed]
    summary |= {"components": int(clusters.component.max() + 1) if len(clusters.docs) else 0,
                "documents_in_components": len(clusters.docs), "removed": len(removed)}
    jaccard = pa.nulls(len(removed), pa.float32())
    if config.verify and len(removed):
        # The kept document may reach a removed one only through others: measure them directly.
        jaccard = pa.array(_jaccard_by_shard_pair(client, removed, kept, _shingle_paths(work / "_minhash", count)),
                           pa.float32())
    return pa.table({
        ID: _ids_of(work / "_minhash", removed),
        KEPT_ID: _ids_of(work / "_minhash", kept),
        COMPONENT: pa.array(clusters.component[clusters.removed], pa.int64()),
        JACCARD: jaccard,
        SHARD: pa.array(doc_shard(removed).astype(np.int32)),
        ROW: pa.array(doc_row(removed)),
    }, schema=DUPLICATES_SCHEMA)


def _ids_of(minhash_dir: Path, docs: np.ndarray) -> pa.Array:
    """The id of each document in `docs`, reading one shard's id file at a time."""
    found = []
    shards = doc_shard(docs)
    for shard in np.unique(shards):
        table = pq.read_table(minhash_dir / f"ids-{shard:05d}.parquet")
        found.append(table.filter(pc.is_in(table[DOC], pa.array(docs[shards == shard]))))
    table = pa.concat_tables(found) if found else IDS_SCHEMA.empty_table()
    order = np.argsort(table[DOC].to_numpy())
    position = order[np.searchsorted(table[DOC].to_numpy(), docs, sorter=order)] if len(docs) else order
    return table[ID].take(pa.array(position, pa.int64())).combine_chunks()
