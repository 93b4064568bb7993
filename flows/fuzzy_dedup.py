"""Fuzzy dedup on Dask: signatures per shard, a band-key shuffle, verification, components.

Working files live under the stage directory and make every pass resumable:

    _minhash/bands-00003.parquet   (band_key, doc) of shard 3
    _minhash/ids-00003.parquet     (doc, id) of shard 3
    _edges.parquet                 candidate edges from the LSH buckets
    _minhash/shingles-00003.parquet  shingle sets of shard 3's documents (verify on)
    _verified_edges.parquet        candidate edges with their exact Jaccard
    duplicates.parquet             id, kept_id, component, jaccard, shard, row per removed doc

Memory per worker task is bounded by one batch (pass 1), one shuffle partition (pass 2),
two shards' shingle sets (verification) or one batch (filtering); the driver holds the
candidate edges only (see `curation.fuzzy_dedup.clusters` for the bound).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from distributed import Client

from curation.exact_dedup import KEPT_ID, ROW, SHARD
from curation.fuzzy_dedup.clusters import cluster
from curation.fuzzy_dedup.config import FuzzyDedupConfig
from curation.fuzzy_dedup.jaccard import ShingleSets, pair_jaccard, sets_of_shingles
from curation.fuzzy_dedup.lsh import (
    BAND_KEY, BANDS_SCHEMA, DOC, DOC_A, DOC_B, band_table, bucket_edges, doc_index, doc_row, doc_shard,
)
from curation.fuzzy_dedup.minhash import shingle_hashes, signatures_of_shingles
from curation.fuzzy_dedup.sorting import unique_pairs
from curation.io.readers import read_batches
from curation.io.writers import write_json_atomic, write_table_atomic
from curation.schema import ID, TEXT
from curation.stage import RowDropFilter, StageStats
from flows.engine import StageRun, _map_shards, run_resumable

log = logging.getLogger("ccforge")

COMPONENT = "component"
JACCARD = "jaccard"
SHINGLES = "shingles"
DUPLICATES_SCHEMA = pa.schema([(ID, pa.string()), (KEPT_ID, pa.string()), (COMPONENT, pa.int64()),
                               (JACCARD, pa.float32()), (SHARD, pa.int32()), (ROW, pa.int64())])
IDS_SCHEMA = pa.schema([(DOC, pa.int64()), (ID, pa.string())])
EDGES_SCHEMA = pa.schema([(DOC_A, pa.int64()), (DOC_B, pa.int64()), (JACCARD, pa.float32())])
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
    futures = client.map(_minhash_shard, paths, range(count), [str(minhash_dir)] * count, [config] * count,
                         [run.batch_rows] * count, pure=False)
    band_paths = [bands for bands, _ in client.gather(futures)]
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
                                             _shingle_paths(minhash_dir, count), config)
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
    return _map_shards(client, run, makers, progress)


def load_fuzzy_filter(duplicates_path: str, shard: int) -> RowDropFilter:
    table = pq.read_table(duplicates_path, columns=[ROW], filters=[(SHARD, "==", shard)])
    return RowDropFilter("fuzzy-dedup", "fuzzy_duplicate", table[ROW].to_numpy())


# ------------------------------------------------------------------------ pass 1: signatures


def _minhash_shard(path: str, shard: int, out_dir: str, config: FuzzyDedupConfig,
                   batch_rows: int) -> tuple[str, str]:
    """Band rows and ids of one shard; with verification on, also every document's shingle set
    (hashing twice would cost more than writing them: 4 bytes per word or character)."""
    bands_path = Path(out_dir) / f"bands-{shard:05d}.parquet"
    ids_path = Path(out_dir) / f"ids-{shard:05d}.parquet"
    sets_path = Path(out_dir) / f"shingles-{shard:05d}.parquet"
    if not (bands_path.exists() and ids_path.exists() and (sets_path.exists() or not config.verify)):
        bands, ids, sets, first_row = [], [], [], 0
        for raw in read_batches(path, source="", batch_rows=batch_rows):
            n_docs = raw.table.num_rows
            docs = doc_index(shard, np.arange(first_row, first_row + n_docs))
            first_row += n_docs
            hashes_S, owner_S = shingle_hashes(raw.table[TEXT], config.minhash)
            signature_NP = signatures_of_shingles(hashes_S, owner_S, n_docs, config.minhash)
            bands.append(band_table(signature_NP, docs, config.minhash, config.active_recall_rows))
            ids.append(pa.table({DOC: docs, ID: raw.table[ID].cast(pa.string())}, schema=IDS_SCHEMA))
            if config.verify:
                shingles = sets_of_shingles(hashes_S, owner_S, n_docs).to_arrow()
                sets.append(pa.table({DOC: docs, SHINGLES: shingles}, schema=SHINGLES_SCHEMA))
        if config.verify:
            write_table_atomic(pa.concat_tables(sets) if sets else SHINGLES_SCHEMA.empty_table(), sets_path)
        write_table_atomic(pa.concat_tables(ids) if ids else IDS_SCHEMA.empty_table(), ids_path)
        write_table_atomic(pa.concat_tables(bands) if bands else BANDS_SCHEMA.empty_table(), bands_path)
    return str(bands_path), str(ids_path)


# ----------------------------------------------------------------- pass 2: buckets to edges


def _candidate_edges(client: Client, band_paths: list[str]) -> pa.Table:
    """Shuffle band rows so each bucket sits in one partition, then take its edges."""
    bands = dd.read_parquet(band_paths)
    edges = bands.shuffle(on=BAND_KEY, npartitions=max(1, bands.npartitions)).map_partitions(
        bucket_edges, meta=bucket_edges(bands._meta))
    frame = client.compute(edges).result()
    doc_a, doc_b = unique_pairs(frame[DOC_A].to_numpy(dtype=np.int64), frame[DOC_B].to_numpy(dtype=np.int64))
    return pa.table({DOC_A: doc_a, DOC_B: doc_b})


# ------------------------------------------------------------------- pass 3: verification


def _jaccard_by_shard_pair(client: Client, doc_a: np.ndarray, doc_b: np.ndarray, shingle_paths: dict[int, str],
                           config: FuzzyDedupConfig) -> np.ndarray:
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
                              shingle_paths[shard_b], config.max_pair_elements, pure=False)] = members
    for future, members in futures.items():
        jaccard[members] = future.result()
    return jaccard


def _shingle_paths(minhash_dir: Path, count: int) -> dict[int, str]:
    return {shard: str(minhash_dir / f"shingles-{shard:05d}.parquet") for shard in range(count)}


def _load_shingles(path: str) -> tuple[np.ndarray, ShingleSets]:
    table = pq.read_table(path)
    return table[DOC].to_numpy(), ShingleSets.from_arrow(table[SHINGLES])


def _verify_block(doc_a: np.ndarray, doc_b: np.ndarray, path_a: str, path_b: str,
                  max_pair_elements: int) -> np.ndarray:
    docs_a, sets_a = _load_shingles(path_a)
    docs_b, sets_b = (docs_a, sets_a) if path_b == path_a else _load_shingles(path_b)
    return pair_jaccard(sets_a, np.searchsorted(docs_a, doc_a), sets_b, np.searchsorted(docs_b, doc_b),
                        max_pair_elements)


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
        jaccard = pa.array(_jaccard_by_shard_pair(client, removed, kept, _shingle_paths(work / "_minhash", count),
                                                  config), pa.float32())
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
