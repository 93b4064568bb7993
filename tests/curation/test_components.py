"""Large-star / small-star components over partitioned files against scipy's connected_components
(the single-process reference: every component keeps its smallest node)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from distributed import Client
from scipy.sparse import coo_matrix
from scipy.sparse import csgraph

from curation.fuzzy_dedup.components import ComponentsSummary, connected_components, large_star, small_star
from curation.fuzzy_dedup.lsh import EDGES_SCHEMA, doc_index
from curation.fuzzy_dedup.sorting import dense_ranks, unique_pairs
from curation.io.writers import write_arrow_atomic
from curation.partitioned import read_mapped, read_partition
from dask_processes import dask_cluster_processes
from flows.engine.cluster import map_on_cluster


def reference(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """scipy's components, self-loops ignored: (removed docs sorted, their kept docs, components)."""
    a, b = a[a != b], b[a != b]
    nodes, ends = dense_ranks(np.r_[a, b])
    graph = coo_matrix((np.ones(len(a)), (ends[:len(a)], ends[len(a):])), shape=(len(nodes), len(nodes)))
    count, labels = csgraph.connected_components(graph, directed=False)
    kept_of_label = np.full(count, np.iinfo(np.int64).max)
    np.minimum.at(kept_of_label, labels, nodes)
    kept = kept_of_label[labels]
    return nodes[nodes != kept], kept[nodes != kept], count


def write_edges(directory: Path, chunks: list[tuple[np.ndarray, np.ndarray]], parquet_every: int = 0) -> list[str]:
    """One input file per chunk: Arrow IPC, or Parquet for every `parquet_every`-th chunk."""
    paths = []
    for i, (a, b) in enumerate(chunks):
        table = pa.table({"doc_a": np.asarray(a, np.int64), "doc_b": np.asarray(b, np.int64)}, schema=EDGES_SCHEMA)
        if parquet_every and i % parquet_every == 0:
            paths.append(str(directory / f"edges-{i}.parquet"))
            pq.write_table(table, paths[-1])
        else:
            paths.append(str(directory / f"edges-{i}.arrow"))
            write_arrow_atomic(table, paths[-1])
    return paths


def read_stars(summary: ComponentsSummary) -> tuple[np.ndarray, np.ndarray]:
    table = pa.concat_tables(read_mapped(path) for path in summary.star_paths)
    doc, kept, partition = (table[name].to_numpy() for name in ("doc", "kept", "partition"))
    assert np.array_equal(partition, doc >> 32), "stars are partitioned by shard"
    order = np.argsort(doc)
    return doc[order], kept[order]


def check(tmp_path: Path, a: np.ndarray, b: np.ndarray, *, parts: int, files: int = 4, **kwargs) -> ComponentsSummary:
    """Components of edges (a, b), split over `files` inputs, equal scipy's."""
    split = np.array_split(np.arange(len(a)), files)
    edge_paths = write_edges(tmp_path, [(a[rows], b[rows]) for rows in split], parquet_every=3)
    summary = connected_components(edge_paths, tmp_path / "work", parts=parts, **kwargs)
    removed, kept, count = reference(a, b)
    doc, doc_kept = read_stars(summary)
    assert np.array_equal(doc, removed) and np.array_equal(doc_kept, kept)
    assert (summary.components, summary.removed, summary.documents_in_components) == (count, len(removed), count + len(removed))
    assert summary.edges_in == len(a)
    assert summary.edges_distinct == len(unique_pairs(np.maximum(a, b)[a != b], np.minimum(a, b)[a != b])[0])
    return summary


def random_graph(seed: int, nodes: int, edges: int) -> tuple[np.ndarray, np.ndarray]:
    """Random edges among `nodes` random non-negative ids, plus isolated edges, repeats and self-loops."""
    rng = np.random.default_rng(seed)
    ids = rng.choice(1 << 40, size=nodes, replace=False) << rng.integers(0, 20)
    a, b = ids[rng.integers(0, nodes, edges)], ids[rng.integers(0, nodes, edges)]
    isolated = rng.choice(1 << 40, size=(100, 2), replace=False) + (1 << 41)
    repeats, loops = rng.integers(0, edges, edges // 10), ids[rng.integers(0, nodes, 50)]
    a, b = np.r_[a, isolated[:, 0], b[repeats], loops], np.r_[b, isolated[:, 1], a[repeats], loops]
    order = rng.permutation(len(a))
    return a[order], b[order]


@pytest.mark.parametrize("parts", [1, 3, 8])
def test_small_components_across_shards(tmp_path, parts):
    d = doc_index
    a = np.r_[d(0, [5, 7]), d(1, [2]), d(2, [1]), d(3, [9]), d(0, [1])]
    b = np.r_[d(1, [2, 2]), d(2, [0]), d(3, [9]), d(0, [3]), d(0, [1])]  # last: a self-loop only
    summary = check(tmp_path, a, b, parts=parts, files=2, out_parts=4)
    # {0:5, 0:7, 1:2, 2:0} keeps 0:5; {2:1, 3:9, 0:3} keeps 0:3; 0:1 has only a self-loop.
    assert (summary.components, summary.removed) == (2, 5)
    assert read_partition(summary.star_paths, 2).to_pydict() == {"doc": list(d(2, [0, 1])), "kept": list(d(0, [5, 3]))}
    assert read_partition(summary.star_paths, 0).num_rows == 1 and read_partition(summary.star_paths, 1).num_rows == 1


def test_documents_outside_out_parts_are_refused(tmp_path):
    edge_paths = write_edges(tmp_path, [(doc_index(5, [1]), doc_index(0, [1]))])
    with pytest.raises(ValueError, match="outside \\[0, 4\\)"):
        connected_components(edge_paths, tmp_path / "work", parts=2, out_parts=4)


@pytest.mark.parametrize("seed, edges, parts", [(0, 3_000, 1), (1, 3_000, 8), (2, 20_000, 3), (3, 20_000, 8)])
def test_random_graphs(tmp_path, seed, edges, parts):
    check(tmp_path, *random_graph(seed, 5_000, edges), parts=parts)


def test_shuffled_chain(tmp_path):
    rng = np.random.default_rng(7)
    nodes = rng.permutation(100_000) * 3 + 11
    flip = rng.random(len(nodes) - 1) < 0.5
    a, b = np.where(flip, nodes[1:], nodes[:-1]), np.where(flip, nodes[:-1], nodes[1:])
    order = rng.permutation(len(a))
    summary = check(tmp_path, a[order], b[order], parts=8)
    assert summary.components == 1 and summary.removed == 99_999
    assert summary.rounds <= 2 * 17 ** 2, summary.rounds  # O(log^2 n)
    print(f"100k chain: {summary.rounds} rounds")


@pytest.mark.parametrize("centre", [25_000, 0])
def test_large_star(tmp_path, centre):
    leaves = np.setdiff1d(np.arange(50_001), [centre])
    summary = check(tmp_path, np.full(len(leaves), centre), np.random.default_rng(1).permutation(leaves), parts=3)
    assert (summary.components, summary.removed) == (1, 50_000)
    print(f"star of 50k leaves, centre {centre}: {summary.rounds} rounds")


def test_empty_inputs(tmp_path):
    empty = np.zeros(0, np.int64)
    edge_paths = write_edges(tmp_path, [(empty, empty)] * 3, parquet_every=2)
    summary = connected_components(edge_paths, tmp_path / "work", parts=3)
    assert (summary.components, summary.documents_in_components, summary.removed, summary.edges_in) == (0, 0, 0, 0)
    assert read_partition(summary.star_paths, 0).num_rows == 0


def test_resume_recomputes_only_missing_files(tmp_path):
    a, b = random_graph(4, 2_000, 3_000)
    first = check(tmp_path, a, b, parts=3)
    work = tmp_path / "work"
    rounds = sorted(work.glob("round-*"))
    assert len(rounds) == first.rounds + 1
    for path in [*(work / "stars").iterdir(), *rounds[-1].iterdir()]:
        path.unlink()
    mtimes = {path: path.stat().st_mtime_ns for path in work.glob("round-*/*")}
    second = check(tmp_path, a, b, parts=3)
    assert second == first
    assert {path: path.stat().st_mtime_ns for path in mtimes} == mtimes
    assert len(list(rounds[-1].iterdir())) == 3
    with pytest.raises(ValueError, match="fresh work_dir"):
        connected_components(write_edges(tmp_path, [(a, b)]), work, parts=3)


def test_one_step_against_sets():
    """large_star and small_star on one partition against the paper's definitions, with Python sets."""
    a, b = random_graph(5, 60, 120)
    big, small = unique_pairs(np.maximum(a, b)[a != b], np.minimum(a, b)[a != b])
    neighbours: dict[int, set[int]] = {}
    for u, v in zip(big.tolist(), small.tolist()):
        neighbours.setdefault(u, set()).add(v)
        neighbours.setdefault(v, set()).add(u)
    m = {u: min(vs | {u}) for u, vs in neighbours.items()}
    large = {(v, m[u]) for u, vs in neighbours.items() for v in vs if v > u}
    small_ = {(max(v, m[u]), min(v, m[u])) for u, vs in neighbours.items() for v in {v for v in vs if v <= u} | {u}
              if v != m[u]}
    assert set(zip(*map(np.ndarray.tolist, large_star(*unique_pairs(np.r_[big, small], np.r_[small, big]))))) == large
    assert set(zip(*map(np.ndarray.tolist, small_star(big, small)))) == small_


def test_on_an_external_dask_cluster(tmp_path):
    a, b = random_graph(6, 5_000, 8_000)
    with dask_cluster_processes(tmp_path / "cluster", workers=2) as address, Client(address) as client:
        client.get_task_stream()  # the scheduler records every task from now on
        summary = check(tmp_path, a, b, parts=4, mapper=functools.partial(map_on_cluster, client, "fuzzy-dedup"))
        assert len({task["worker"] for task in client.get_task_stream()}) == 2
    local = connected_components([str(path) for path in sorted(tmp_path.glob("edges-*"))], tmp_path / "local", parts=4)
    assert (summary.components, summary.removed, summary.rounds) == (local.components, local.removed, local.rounds)
