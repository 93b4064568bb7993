"""Fuzzy dedup: buckets, verification, components, and the whole stage on Dask."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from curation.fuzzy_dedup import FuzzyDedupConfig
from flows.demo.dedup_eval import (
    inject_near_duplicates, python_shingles, real_documents, score, true_similar_pairs,
)
from curation.fuzzy_dedup.jaccard import pair_jaccard
from curation.fuzzy_dedup.lsh import bucket_edges, key_range
from curation.fuzzy_dedup.shingles import ShingleSets, shingle_sets
from dask_processes import dask_cluster_processes
from flows.cli import main
from flows.engine.cluster import dask_client
from flows.engine.stage_dir import StageRun
from flows.engine.fuzzy_dedup import run_fuzzy_dedup


def test_buckets_give_star_and_chain_edges_not_all_pairs():
    doc_a, doc_b = bucket_edges(np.array([7, 7, 7, 7, 9, 9, 5, 5], dtype=np.uint64), [40, 10, 30, 20, 10, 20, 50, 50])
    pairs = set(zip(doc_a.tolist(), doc_b.tolist()))
    # Bucket 7 = {10, 20, 30, 40}: star from 10 plus the chain 20-30, 30-40; bucket 9 repeats 10-20;
    # bucket 5 holds one document twice, which is no pair at all.
    assert pairs == {(10, 20), (10, 30), (10, 40), (20, 30), (30, 40)}
    assert len(doc_a) == len(pairs)


def test_key_ranges_split_sorted_keys_without_gaps():
    keys = np.sort(np.random.default_rng(0).integers(0, 2**64, 1000, dtype=np.uint64, endpoint=False))
    keys[-1] = np.uint64(2**64 - 1)
    for parts in (1, 3, 8):
        ranges = [key_range(keys, part, parts) for part in range(parts)]
        assert [r.start for r in ranges[1:]] == [r.stop for r in ranges[:-1]]
        assert ranges[0].start == 0 and ranges[-1].stop == len(keys)
        assert all(r.stop - r.start > 1000 / parts / 2 for r in ranges)


def test_pair_jaccard_is_exact_on_real_texts():
    texts = [p.read_text()[:4000] for p in sorted(Path("/usr/share/common-licenses").glob("*"))[:8] if p.is_file()]
    texts += [texts[0][:2000] + " extra words here", "", "short"]
    sets = shingle_sets(pa.array(texts), "char:24")
    python_sets = [set(sets.values[sets.offsets[i]:sets.offsets[i + 1]].tolist()) for i in range(len(texts))]
    a, b = np.triu_indices(len(texts), k=1)
    expected = [len(python_sets[i] & python_sets[j]) / len(python_sets[i] | python_sets[j])
                if python_sets[i] | python_sets[j] else 0.0 for i, j in zip(a, b)]
    np.testing.assert_allclose(pair_jaccard(sets, a, sets, b), expected, rtol=1e-6)
    # The 32-bit hashes agree with string shingles (no collisions on these texts).
    strings = [python_shingles(t, "char:24") for t in texts[:3]]
    assert pair_jaccard(sets, [0], sets, [1])[0] == pytest.approx(
        len(strings[0] & strings[1]) / len(strings[0] | strings[1]), abs=1e-6)
    for lists in (sets.to_arrow(), sets.to_arrow()[2:]):  # a slice keeps its parent's offsets and values
        roundtrip = ShingleSets.from_arrow(lists)
        assert roundtrip.values.tolist() == lists.values[lists.offsets[0].as_py():lists.offsets[-1].as_py()].to_pylist()
        assert np.array_equal(roundtrip.sizes, sets.sizes[len(texts) - len(lists):])


# ---------------------------------------------------------------------- the stage on Dask


@pytest.fixture(scope="module")
def injected():
    originals = [t[:8000] for t in real_documents(100, seed=3)]
    return inject_near_duplicates(originals, fraction=0.5, seed=3)


@pytest.fixture(scope="module")
def corpus_dir(injected, tmp_path_factory) -> Path:
    """The injected corpus as 3 Parquet shards with `id` and `text` (and one extra column)."""
    out = tmp_path_factory.mktemp("fuzzy-corpus")
    ids = [f"doc-{i:04d}" for i in range(len(injected.texts))]
    for shard, rows in enumerate(np.array_split(np.arange(len(ids)), 3)):
        pq.write_table(pa.table({"id": [ids[i] for i in rows], "text": [injected.texts[i] for i in rows],
                                 "kind": [injected.kind[i] for i in rows]}), out / f"part-{shard}.parquet")
    return out


@pytest.fixture(scope="module")
def client():
    with dask_client(None, workers=2) as c:
        yield c


def _run(client, corpus_dir: Path, out: Path, config: FuzzyDedupConfig, key: str = "k1"):
    inputs = [(str(p), "") for p in sorted(corpus_dir.glob("*.parquet"))]
    return run_fuzzy_dedup(client, StageRun(name="fuzzy-dedup", inputs=inputs, output_dir=out, stage_key=key),
                           config, progress=lambda _: None)


def _clusters_from(duplicates: pd.DataFrame, n_docs: int) -> tuple[np.ndarray, np.ndarray]:
    number = lambda ids: ids.str.removeprefix("doc-").astype(int).to_numpy()  # noqa: E731
    cluster_of = np.full(n_docs, -1)
    removed = np.zeros(n_docs, dtype=bool)
    cluster_of[number(duplicates["id"])] = duplicates["component"]
    cluster_of[number(duplicates["kept_id"])] = duplicates["component"]
    removed[number(duplicates["id"])] = True
    return cluster_of, removed


def test_precision_and_recall_on_injected_near_duplicates(client, corpus_dir, injected, tmp_path):
    stats = _run(client, corpus_dir, tmp_path / "fuzzy", FuzzyDedupConfig())
    duplicates = pq.read_table(tmp_path / "fuzzy" / "duplicates.parquet").to_pandas()
    truth = true_similar_pairs(injected.texts, "char:24", threshold=0.8)
    result = score(truth, *_clusters_from(duplicates, len(injected.texts)))
    assert result.true_pairs >= 60, result
    assert result.precision >= 0.99 and result.recall >= 0.95, result
    # Every document is accounted for, and the shards hold exactly the survivors (all columns).
    assert stats.docs_in == len(injected.texts) and stats.dropped == {"fuzzy_duplicate": len(duplicates)}
    kept = pa.concat_tables(pq.read_table(p) for p in sorted((tmp_path / "fuzzy").glob("part-*.parquet")))
    assert kept.column_names[:3] == ["id", "text", "kind"]
    assert set(kept["id"].to_pylist()) == {f"doc-{i:04d}" for i in range(len(injected.texts))} - set(duplicates["id"])
    # The audit table: kept ids survive, Jaccard to the kept document is measured, components are whole.
    assert set(duplicates["kept_id"]) <= set(kept["id"].to_pylist())
    assert duplicates["jaccard"].notna().all() and (duplicates["jaccard"] > 0.5).all()
    assert (duplicates.groupby("component")["kept_id"].nunique() == 1).all()
    # Copies with 40 % of words changed are far below 0.8 and must survive.
    forty = {f"doc-{i:04d}" for i, k in enumerate(injected.kind) if k == "words_40"}
    assert not forty & set(duplicates["id"])
    summary = json.loads((tmp_path / "fuzzy" / "clusters.json").read_text())
    assert summary["removed"] == len(duplicates) and summary["verified_pairs"] <= summary["candidate_pairs"]


def test_components_equal_scipy_on_the_verified_graph(client, corpus_dir, tmp_path):
    """The distributed components of the stage's own verified graph, against scipy in one process."""
    out = tmp_path / "fuzzy"
    _run(client, corpus_dir, out, FuzzyDedupConfig())
    edges = pq.read_table(sorted(str(p) for p in (out / "_similar").glob("part-*.parquet")))
    docs, ends = np.unique(np.r_[edges["doc_a"].to_numpy(), edges["doc_b"].to_numpy()], return_inverse=True)
    graph = coo_matrix((np.ones(edges.num_rows), (ends[:edges.num_rows], ends[edges.num_rows:])), (len(docs),) * 2)
    _, labels = connected_components(graph, directed=False)
    smallest = np.full(labels.max() + 1, len(docs))
    np.minimum.at(smallest, labels, np.arange(len(docs)))
    expected = {int(d): int(docs[smallest[label]]) for d, label in zip(docs, labels) if docs[smallest[label]] != d}
    duplicates = pq.read_table(out / "duplicates.parquet")
    removed = (duplicates["shard"].to_numpy().astype(np.int64) << 32) | duplicates["row"].to_numpy()
    assert len(expected) > 20 and dict(zip(removed.tolist(), duplicates["component"].to_pylist())) == expected


def test_without_verification_candidates_are_kept_and_rerun_is_skipped(client, corpus_dir, tmp_path):
    out = tmp_path / "fuzzy"
    unverified = _run(client, corpus_dir, out, FuzzyDedupConfig(verify=False))
    duplicates = pq.read_table(out / "duplicates.parquet")
    assert duplicates["jaccard"].null_count == duplicates.num_rows > 0
    assert not list((out / "_minhash").glob("shingles-*"))
    marker = (out / "_SUCCESS").stat().st_mtime_ns
    again = _run(client, corpus_dir, out, FuzzyDedupConfig(verify=False))
    assert again.to_dict() == unverified.to_dict() and (out / "_SUCCESS").stat().st_mtime_ns == marker


def test_cli_stage_flags_and_bad_flags(corpus_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["stage", "fuzzy-dedup", "--input", str(corpus_dir), "--output", str(out),
                 "--shingle", "word:5", "--threshold", "0.7", "--workers", "1"]) == 0
    assert (out / "_SUCCESS").exists() and (out / "duplicates.parquet").exists()
    assert main(["stage", "fuzzy-dedup", "--input", str(corpus_dir), "--output", str(out),
                 "--shingle", "tri:3"]) == 2
    assert "shingle must look like 'char:24' or 'word:5'" in capsys.readouterr().err
    assert main(["stage", "langid", "--input", str(corpus_dir), "--output", str(out), "--bands", "4"]) == 2
    assert "apply to the fuzzy-dedup stage only" in capsys.readouterr().err


@pytest.mark.slow
def test_external_scheduler_with_two_workers_gives_the_same_result(client, corpus_dir, tmp_path):
    """`dask scheduler` and two `dask worker` processes, as on a real cluster."""
    with dask_cluster_processes(tmp_path / "cluster", workers=2) as address:
        assert main(["stage", "fuzzy-dedup", "--input", str(corpus_dir), "--output", str(tmp_path / "ext"),
                     "--scheduler", address]) == 0
    _run(client, corpus_dir, tmp_path / "local", FuzzyDedupConfig())
    external_result = pq.read_table(tmp_path / "ext" / "duplicates.parquet")
    assert external_result.num_rows > 0
    assert external_result.equals(pq.read_table(tmp_path / "local" / "duplicates.parquet"))
    shutil.rmtree(tmp_path / "ext")
