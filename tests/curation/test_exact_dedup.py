import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.exact_dedup import (
    DUPLICATES_SCHEMA, HASHES_SCHEMA, ExactDedupConfig, find_duplicates, group_partition, hash_documents, hash_keys, hash_shard,
    normalized_texts, shard_duplicates,
)
from curation.stage import RowDropFilter
from flows.engine.cluster import dask_client
from flows.engine.stage_dir import StageRun
from flows.engine.exact_dedup import run_exact_dedup


def _shard(texts, shard):
    table = pa.table({"id": [f"s{shard}-{i}" for i in range(len(texts))], "text": texts})
    return hash_documents(table, shard, 0, ExactDedupConfig())


def test_normalisation_folds_case_and_whitespace():
    assert normalized_texts(pa.array(["  Hello\n\tWorld ", "hello world"])).to_pylist() == ["hello world"] * 2


def test_first_copy_in_crawl_order_is_kept_across_shards(handbook_pages):
    texts = [p.read_text()[:3000] for p in handbook_pages["en-US"][:6]]
    shard0 = _shard([texts[0], texts[1], texts[0].upper(), texts[2]], 0)
    shard1 = _shard([texts[1], texts[3], texts[0]], 1)
    both = pa.concat_tables([shard1, shard0])
    duplicates = find_duplicates(both.take(np.random.default_rng(0).permutation(both.num_rows)))
    mapping = dict(zip(duplicates["id"].to_pylist(), duplicates["kept_id"].to_pylist()))
    assert mapping == {"s0-2": "s0-0", "s1-0": "s0-1", "s1-2": "s0-0"}
    assert sorted(zip(duplicates["shard"].to_pylist(), duplicates["row"].to_pylist())) == [(0, 2), (1, 0), (1, 2)]


def test_md5_and_raw_hashing_options():
    table = pa.table({"id": ["a", "b"], "text": ["Same text", "same  text"]})
    raw = hash_documents(table, 0, 0, ExactDedupConfig(normalize=False, hash="md5"))["hash"].to_pylist()
    assert raw[0] != raw[1] and len(raw[0]) == 32
    folded = hash_documents(table, 0, 0, ExactDedupConfig(hash="md5"))["hash"].to_pylist()
    assert folded[0] == folded[1]


def test_filter_drops_listed_rows_across_batches():
    stage = RowDropFilter("exact-dedup", "exact_duplicate", np.array([1, 4]))
    first = stage.run(pa.table({"id": ["a", "b", "c"], "text": ["1", "2", "3"]}))
    second = stage.run(pa.table({"id": ["d", "e"], "text": ["4", "5"]}))
    assert first.kept["id"].to_pylist() == ["a", "c"] and second.kept["id"].to_pylist() == ["d"]
    assert first.dropped_counts() == second.dropped_counts() == {"exact_duplicate": 1}


def test_no_duplicates_gives_empty_typed_frame():
    found = find_duplicates(_shard(["one", "two"], 0))
    assert found.num_rows == 0 and found.schema == DUPLICATES_SCHEMA
    assert find_duplicates(HASHES_SCHEMA.empty_table()).schema == DUPLICATES_SCHEMA


# ------------------------------------------------------------- the passes on a Dask cluster


def _reference_duplicates(inputs: list[str]) -> pa.Table:
    """The single-process result (the stage's output before 2026-12): a pandas group-by over the
    hashes of the whole corpus, every copy after the first in (shard, row) order, by (shard, row)."""
    hashes = pd.concat([hash_documents(pq.read_table(path), shard, 0, ExactDedupConfig()).to_pandas()
                        for shard, path in enumerate(inputs)], ignore_index=True)
    hashes = hashes.sort_values(["hash", "shard", "row"], kind="stable")
    copy = hashes["hash"].duplicated(keep="first")
    copies = hashes[copy].assign(kept_id=hashes.groupby("hash", sort=False)["id"].transform("first")[copy])
    frame = copies[DUPLICATES_SCHEMA.names].sort_values(["shard", "row"])
    return pa.Table.from_pandas(frame, schema=DUPLICATES_SCHEMA, preserve_index=False)


@pytest.fixture(scope="module")
def dup_corpus(tmp_path_factory, handbook_pages) -> list[str]:
    """Five Parquet shards of real pages with copies inside a shard, across shards, case/space
    variants, an empty shard and a shard of only copies."""
    texts = [p.read_text()[:5000] for p in handbook_pages["en-US"][:60]]
    rng = np.random.default_rng(4)
    shards = [texts[:20] + [texts[3], texts[3].upper()], texts[20:40] + texts[5:8], [],
              [texts[i] for i in rng.integers(0, 60, 25)], texts[40:60] + [f"  {texts[45]}\n"]]
    out = tmp_path_factory.mktemp("exact-corpus")
    paths = []
    for i, shard in enumerate(shards):
        paths.append(str(out / f"part-{i}.parquet"))
        pq.write_table(pa.table({"id": [f"s{i}-{r}" for r in range(len(shard))], "text": pa.array(shard, pa.string())}),
                       paths[-1])
    return paths


def test_stage_on_dask_equals_the_single_process_result(dup_corpus, tmp_path):
    out = tmp_path / "exact"
    with dask_client(None, workers=2) as client:
        run = StageRun(name="exact-dedup", inputs=[(p, "") for p in dup_corpus], output_dir=out, stage_key="k")
        stats = run_exact_dedup(client, run, ExactDedupConfig(), progress=lambda _: None)
    expected = _reference_duplicates(dup_corpus)
    assert expected.num_rows > 30  # the fixture plants many copies
    assert pq.read_table(out / "duplicates.parquet").equals(expected)
    assert stats.dropped == {"exact_duplicate": expected.num_rows}
    kept = pq.read_table(sorted(str(p) for p in out.glob("part-*.parquet")))["id"].to_pylist()
    assert set(kept).isdisjoint(expected["id"].to_pylist()) and len(kept) == stats.docs_out
    # Each shard's duplicates are its own file: the filter pass of a shard reads only it.
    per_shard = [pq.read_table(out / "duplicates.parquet" / f"part-{i:05d}.parquet") for i in range(len(dup_corpus))]
    assert [set(t["shard"].to_pylist()) <= {i} for i, t in enumerate(per_shard)] == [True] * len(dup_corpus)


def test_passes_alone_without_dask(dup_corpus, tmp_path):
    """Each pass is a plain function over files: run them in-process with 3 hash ranges."""
    count, parts = len(dup_corpus), 3
    hash_paths = [hash_shard(p, i, str(tmp_path / f"h{i}.arrow"), ExactDedupConfig(), parts)
                  for i, p in enumerate(dup_corpus)]
    group_paths = [str(tmp_path / f"g{p}.arrow") for p in range(parts)]
    found = [group_partition(p, group_paths[p], hash_paths) for p in range(parts)]
    results = [shard_duplicates(i, str(tmp_path / f"d{i}.parquet"), group_paths) for i in range(count)]
    expected = _reference_duplicates(dup_corpus)
    assert sum(found) == sum(n for n, _ in results) == expected.num_rows
    assert pq.read_table([str(tmp_path / f"d{i}.parquet") for i in range(count)]).equals(expected)
    assert hash_keys(pa.array(["00000000000000ff", "ffffffffffffffff0"])).tolist() == [255, 2**64 - 1]
