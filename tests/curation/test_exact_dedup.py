import numpy as np
import pyarrow as pa

from curation.exact_dedup import ExactDedupConfig, find_duplicates, hash_documents, normalized_texts
from curation.stage import RowDropFilter


def _shard(texts, shard):
    table = pa.table({"id": [f"s{shard}-{i}" for i in range(len(texts))], "text": texts})
    return hash_documents(table, shard, 0, ExactDedupConfig()).to_pandas()


def test_normalisation_folds_case_and_whitespace():
    assert normalized_texts(pa.array(["  Hello\n\tWorld ", "hello world"])).to_pylist() == ["hello world"] * 2


def test_first_copy_in_crawl_order_is_kept_across_shards(handbook_pages):
    texts = [p.read_text()[:3000] for p in handbook_pages["en-US"][:6]]
    shard0 = _shard([texts[0], texts[1], texts[0].upper(), texts[2]], 0)
    shard1 = _shard([texts[1], texts[3], texts[0]], 1)
    import pandas as pd

    duplicates = find_duplicates(pd.concat([shard1, shard0]).sample(frac=1.0, random_state=0))
    mapping = dict(zip(duplicates["id"], duplicates["kept_id"]))
    assert mapping == {"s0-2": "s0-0", "s1-0": "s0-1", "s1-2": "s0-0"}
    assert sorted(zip(duplicates["shard"], duplicates["row"])) == [(0, 2), (1, 0), (1, 2)]


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
    frame = find_duplicates(_shard(["one", "two"], 0))
    assert len(frame) == 0 and list(frame.columns) == ["id", "kept_id", "hash", "shard", "row"]
