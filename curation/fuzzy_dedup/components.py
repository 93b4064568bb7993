"""Connected components of the duplicate graph as passes over key-partitioned files.

Large-star / small-star, Kiveris et al. 2014, "Connected Components in MapReduce and Beyond"
(SoCC '14, section 3). With m(u) = min(Γ(u) ∪ {u}):
  large-star at u: emit (v, m(u)) for every neighbour v > u;
  small-star at u: emit (v, m(u)) for every v in {v ∈ Γ(u): v <= u} ∪ {u}  (self-loops dropped).
Passes alternate LS, SS, LS, ... until every component is a star centred on its smallest node,
which is the fixed point of both operations.

Why this and not min-label propagation (hash-to-min): propagation needs O(diameter) rounds, and
LSH's chained buckets make long paths (a 100,000-node chain would take 100,000 rounds). LS/SS
needs O(log^2 n) rounds (proven), about O(log n) in practice, and never adds edges: every edge
is replaced by at most one edge, so no round's files are larger than the input's.

Passes and files (P = `parts`; every pass is one `mapper` call, one task per file it writes):
  round-0000/part-IIIII.arrow  prepare, one task per input file: self-loops and repeats dropped.
  round-KKKK/part-PPPPP.arrow  pass K, task p: LS for odd K, SS for even K, on the rows of
                               partition p of round K-1, read with `read_partition`.
  stars/part-PPPPP.arrow       one row (doc, kept) per document that is not its component's kept one.
Round files hold adjacency rows (node, neighbour), partitioned by `hash_partition(node, P)`, so a
task sees node u's rows whole. LS needs every neighbour of u, so the rounds LS reads (even K) hold
each edge in both directions; SS only needs u's smaller neighbours (the larger ones cannot change
m(u)), so the rounds SS reads (odd K) hold each edge once, as (larger, smaller): half the rows.
Repeated rows (one edge emitted twice, by one task or by two) are dropped by the task that reads
them: one sort per task instead of two, and a task never writes more edges than it read.

Convergence is tested exactly and locally by each LS task on its input: the graph is a forest of
stars centred on their minima iff no node has both a smaller neighbour and a second neighbour
(a leaf's single neighbour c then has no smaller neighbour, so c is a centre whose neighbours are
all leaves). Such a graph is a fixed point of LS and SS, so this stops as soon as an LS+SS
iteration would leave the edge set unchanged, and one iteration earlier than comparing edge
counts and checksums across iterations would. The stars pass then reads that LS pass's output
(LS of a star forest is the same forest, as (leaf, centre) rows).

Resume: every file is written atomically and carries its task's counts in its Arrow schema
metadata, so it is its own completion marker; a task whose output exists returns those counts
without reading its input. A rerun in the same `work_dir` therefore recomputes only missing files
(the first run's `parts` and inputs are recorded in params.json and must match; a run with another
`out_partition` needs the stars dir removed first).

Memory: a task holds one partition of one round's rows (16 bytes a row, both directions in LS
rounds) plus sort buffers. Hashing spreads nodes evenly, but a node's rows stay together: a star
of n leaves costs 16n bytes in the task of its centre (twice that while sorting). The driver holds
file-name patterns and P small dicts of counts per round, never edges.

Legend: E adjacency rows (node, neighbour) of one partition, sorted and unique; G their node
groups (one per distinct node); L input edges.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation.fuzzy_dedup.lsh import DOC, DOC_A, DOC_B, doc_shard
from curation.fuzzy_dedup.sorting import unique_pairs
from curation.io.writers import write_json_atomic
from curation.partitioned import (
    column_array, hash_partition, local_mapper, read_mapped, read_partition, shared_args, write_partitioned,
)

log = logging.getLogger(__name__)

NODE = "node"
NEIGHBOUR = "neighbour"
KEPT = "kept"
COUNTS = b"ccforge_counts"  # schema metadata key of a file's task counts (JSON)

Counts = dict[str, int]


@dataclass(frozen=True)
class ComponentsSummary:
    """What `connected_components` found and where it wrote it; small enough for the driver and logs."""

    components: int  # distinct kept documents: components with at least one edge
    documents_in_components: int  # documents with at least one edge (self-loops are not edges)
    removed: int  # documents_in_components - components: the rows of the star files
    rounds: int  # LS and SS passes, the prepare and stars passes not included
    edges_in: int  # input rows, repeats and self-loops included
    edges_distinct: int  # distinct undirected edges, self-loops excluded
    star_paths: tuple[str, ...]  # stars/part-*.arrow: read shard s with read_partition(star_paths, s)


def connected_components(edge_paths: list[str], work_dir: str | Path, *, parts: int,
                         mapper: Callable[..., list] = local_mapper, out_parts: int | None = None,
                         out_partition: Callable[[np.ndarray], np.ndarray] = doc_shard) -> ComponentsSummary:
    """Components of the undirected graph whose edges are the (doc_a, doc_b) rows of `edge_paths`.

    Each input is a table with int64 columns doc_a, doc_b, one row per edge in either orientation,
    repeats and self-loops allowed (ignored): an Arrow IPC *file* (`write_arrow_atomic`; read
    memory-mapped), or Parquet if its name ends in .parquet. A table with no rows is fine, a
    zero-byte file is not. Ids are non-negative int64 (document addresses, or any other ids).
    Writes work_dir/stars/part-PPPPP.arrow (P = `parts`; with `write_partitioned`): int64 columns
    doc, kept (the smallest document of doc's component), one row per document that is not
    kept, partitioned by `out_partition(doc)`, by default doc >> 32, the shard of a document
    address (lsh.doc_index). With `out_parts`, every document must map into [0, out_parts): the
    prepare pass raises ValueError otherwise, so the caller's reads of partitions
    0..out_parts-1 cover every row. `out_partition` must be a module-level function (picklable).
    """
    if not edge_paths:
        raise ValueError("connected_components needs at least one edge file (an empty table will do)")
    if parts < 1:
        raise ValueError(f"parts must be at least 1, got {parts}")
    work_dir, edge_paths = Path(work_dir), [str(path) for path in edge_paths]
    _check_same_run(work_dir, edge_paths, parts)
    prepared = _run_prepare(mapper, edge_paths, work_dir, parts, out_partition, out_parts)
    rounds, last_counts, edges_distinct = _run_rounds(mapper, work_dir, len(edge_paths), parts)
    removed = _run_stars(mapper, _round_dir(work_dir, rounds), work_dir / "stars", parts, out_partition)
    components = sum(counts["centres"] for counts in last_counts)
    return ComponentsSummary(components=components, documents_in_components=components + removed, removed=removed,
                             rounds=rounds, edges_in=sum(counts["rows_in"] for counts in prepared),
                             edges_distinct=edges_distinct, star_paths=tuple(_round_paths(work_dir / "stars", parts)))


# ----------------------------------------------------------------------------- driver


def _run_prepare(mapper: Callable[..., list], edge_paths: list[str], work_dir: Path, parts: int,
                 out_partition: Callable[[np.ndarray], np.ndarray], out_parts: int | None) -> list[Counts]:
    out_paths = _round_paths(_round_dir(work_dir, 0), len(edge_paths))
    return mapper(_prepare_task, edge_paths, out_paths, *shared_args(len(edge_paths), parts, out_partition, out_parts))


def _run_rounds(mapper: Callable[..., list], work_dir: Path, inputs: int, parts: int) -> tuple[int, list[Counts], int]:
    """LS, SS, LS, ... until an LS task finds no non-star node: (rounds, last LS counts, distinct input edges)."""
    in_count, edges_distinct = inputs, 0
    for round_ in itertools.count(1):
        task = _large_star_task if round_ % 2 else _small_star_task
        in_dir, out_dir = str(_round_dir(work_dir, round_ - 1)), str(_round_dir(work_dir, round_))
        counts = mapper(task, list(range(parts)), *shared_args(parts, in_dir, in_count, out_dir, parts))
        edges = sum(c["edges"] for c in counts)
        edges_distinct = edges if round_ == 1 else edges_distinct
        log.info("components round %d (%s): %d edges in", round_, task.__name__.strip("_"), edges)
        if task is _large_star_task and not sum(c["not_star"] for c in counts):
            return round_, counts, edges_distinct
        in_count = parts


def _run_stars(mapper: Callable[..., list], last_round: Path, stars_dir: Path, parts: int,
               out_partition: Callable[[np.ndarray], np.ndarray]) -> int:
    """The converged (leaf, centre) rows of the last round -> star files; the number of leaves."""
    return sum(mapper(_stars_task, list(range(parts)), *shared_args(parts, str(last_round), parts, str(stars_dir), out_partition)))


def _check_same_run(work_dir: Path, edge_paths: list[str], parts: int) -> None:
    """Resuming is only sound with the files of the same inputs and partitioning."""
    params, path = {"parts": parts, "edge_paths": edge_paths}, work_dir / "params.json"
    if path.exists() and json.loads(path.read_text()) != params:
        raise ValueError(f"{work_dir} holds a run with other inputs or parts ({path}): use a fresh work_dir")
    write_json_atomic(params, path)


def _round_dir(work_dir: Path, round_: int) -> Path:
    return work_dir / f"round-{round_:04d}"


def _round_paths(directory: str | Path, count: int) -> list[str]:
    return [str(Path(directory) / f"part-{i:05d}.arrow") for i in range(count)]


# ----------------------------------------------------------------------------- tasks (run by the mapper)


def _prepare_task(edge_path: str, out_path: str, parts: int, out_partition: Callable[[np.ndarray], np.ndarray],
                  out_parts: int | None) -> Counts:
    """One input file -> both-direction adjacency rows of its distinct edges, for the first LS."""
    if (done := _finished_counts(out_path)) is not None:
        return done
    a_L, b_L = _read_edges(edge_path)
    _check_out_partition(np.r_[a_L, b_L], out_partition, out_parts)
    loop = a_L == b_L
    big, small = unique_pairs(np.maximum(a_L, b_L)[~loop], np.minimum(a_L, b_L)[~loop])
    counts = {"rows_in": len(a_L)}
    _write_adjacency(big, small, out_path, parts, both_directions=True, counts=counts)
    return counts


def _large_star_task(part: int, in_dir: str, in_count: int, out_dir: str, parts: int) -> Counts:
    out_path = _round_paths(out_dir, parts)[part]
    if (done := _finished_counts(out_path)) is not None:
        return done
    node_E, neighbour_E = _read_adjacency(in_dir, in_count, part)
    counts = star_counts(node_E, neighbour_E)
    _write_adjacency(*large_star(node_E, neighbour_E), out_path, parts, both_directions=False, counts=counts)
    return counts


def _small_star_task(part: int, in_dir: str, in_count: int, out_dir: str, parts: int) -> Counts:
    out_path = _round_paths(out_dir, parts)[part]
    if (done := _finished_counts(out_path)) is not None:
        return done
    node_E, neighbour_E = _read_adjacency(in_dir, in_count, part)
    counts = {"edges": len(node_E)}
    _write_adjacency(*small_star(node_E, neighbour_E), out_path, parts, both_directions=True, counts=counts)
    return counts


def _stars_task(part: int, in_dir: str, parts: int, out_dir: str, out_partition: Callable[[np.ndarray], np.ndarray]) -> int:
    """The converged (leaf, centre) rows of partition `part` -> (doc, kept) rows by output partition."""
    out_path = _round_paths(out_dir, parts)[part]
    if (done := _finished_counts(out_path)) is None:
        leaf_E, centre_E = _read_adjacency(in_dir, parts, part)
        done = {"removed": len(leaf_E)}
        table = pa.table({DOC: leaf_E, KEPT: centre_E}).replace_schema_metadata({COUNTS: json.dumps(done)})
        write_partitioned(table, out_partition(leaf_E), out_path)
    return done["removed"]


# ----------------------------------------------------------------------------- the operations, per partition


def large_star(node_E: np.ndarray, neighbour_E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Large-star at every node u of E (all of u's neighbours present): (v, m(u)) for v > u, as (larger, smaller)."""
    start_G = _group_starts(node_E)
    m_G = np.minimum(node_E[start_G], neighbour_E[start_G])  # neighbours are sorted: the first is the smallest
    m_E = np.repeat(m_G, np.diff(np.r_[start_G, len(node_E)]))
    larger = neighbour_E > node_E
    return neighbour_E[larger], m_E[larger]


def small_star(node_E: np.ndarray, neighbour_E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Small-star at every node u of E (only u's smaller neighbours present): (v, m(u)) for v < u
    and (u, m(u)), self-loops (m(u), m(u)) dropped, as (larger, smaller)."""
    start_G = _group_starts(node_E)
    m_G = neighbour_E[start_G]
    m_E = np.repeat(m_G, np.diff(np.r_[start_G, len(node_E)]))
    others = neighbour_E != m_E
    return np.r_[neighbour_E[others], node_E[start_G]], np.r_[m_E[others], m_G]


def star_counts(node_E: np.ndarray, neighbour_E: np.ndarray) -> Counts:
    """Of an LS input partition: its edges (once, at their larger end), star centres (nodes
    without a smaller neighbour) and non-star nodes (a smaller neighbour and another one)."""
    start_G = _group_starts(node_E)
    degree_G = np.diff(np.r_[start_G, len(node_E)])
    has_smaller_G = neighbour_E[start_G] < node_E[start_G]
    return {"edges": int((neighbour_E < node_E).sum()), "centres": int((~has_smaller_G).sum()),
            "not_star": int((has_smaller_G & (degree_G > 1)).sum())}


def _group_starts(node_E: np.ndarray) -> np.ndarray:
    """Index of the first row of each node group of sorted rows."""
    return np.flatnonzero(np.r_[True, node_E[1:] != node_E[:-1]]) if len(node_E) else np.zeros(0, dtype=np.int64)


# ----------------------------------------------------------------------------- files


def _read_edges(path: str) -> tuple[np.ndarray, np.ndarray]:
    table = pq.read_table(path, columns=[DOC_A, DOC_B]) if path.endswith(".parquet") else read_mapped(path)
    return tuple(column_array(table, name).to_numpy().astype(np.int64, copy=False) for name in (DOC_A, DOC_B))


def _read_adjacency(in_dir: str, in_count: int, part: int) -> tuple[np.ndarray, np.ndarray]:
    """Partition `part` of a round's files: distinct rows, sorted by (node, neighbour)."""
    table = read_partition(_round_paths(in_dir, in_count), part)
    return unique_pairs(column_array(table, NODE).to_numpy(), column_array(table, NEIGHBOUR).to_numpy())


def _write_adjacency(big: np.ndarray, small: np.ndarray, path: str, parts: int, *, both_directions: bool,
                     counts: Counts) -> None:
    """Edges (big > small) as adjacency rows keyed by `hash_partition(node)`, with the task's counts."""
    node, neighbour = (np.r_[big, small], np.r_[small, big]) if both_directions else (big, small)
    table = pa.table({NODE: node, NEIGHBOUR: neighbour}).replace_schema_metadata({COUNTS: json.dumps(counts)})
    write_partitioned(table, hash_partition(node, parts), path)


def _finished_counts(path: str) -> Counts | None:
    """The counts of the task that wrote `path` (files are written atomically), or None if it is missing."""
    if not Path(path).exists():
        return None
    with pa.memory_map(path) as source:
        return json.loads(pa.ipc.open_file(source).schema.metadata[COUNTS])


def _check_out_partition(docs: np.ndarray, out_partition: Callable[[np.ndarray], np.ndarray], out_parts: int | None) -> None:
    if out_parts is None or not len(docs):
        return
    partition = out_partition(docs)
    outside = (partition < 0) | (partition >= out_parts)
    if outside.any():
        raise ValueError(f"document {docs[outside][0]} maps to output partition {partition[outside][0]}, "
                         f"outside [0, {out_parts}): raise out_parts or fix out_partition")
