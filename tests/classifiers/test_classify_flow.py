"""The classify stage on a Dask LocalCluster: scores, byte-weighted cuts, buckets, reports, reuse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from classifiers.ensemble import assign_buckets, quality_levels
from classifiers.stage import ClassifierSpec, ClassifyConfig, ClassifyStage
from classifiers.thresholds import load_thresholds
from flows.engine.classify import run_classify_stage
from flows.engine.cluster import dask_client
from flows.engine.stage_dir import fingerprint_files
from flows.errors import StageFailed


@pytest.fixture(scope="module")
def client():
    with dask_client(workers=2) as client:
        yield client


@pytest.fixture
def shards(tmp_path: Path, labelled: pa.Table) -> list[tuple[str, str]]:
    table = labelled.select(["id", "text", "source"]).slice(0, 120)
    paths = []
    for k in range(3):
        path = tmp_path / "in" / f"part-{k}.parquet"
        path.parent.mkdir(exist_ok=True)
        pq.write_table(table.slice(k * 40, 40), path)
        paths.append((str(path), "docs"))
    return paths


def test_classify_stage_end_to_end(client, shards, tmp_path: Path, fasttext_path, embedding_dir):
    config = ClassifyConfig(classifiers=(ClassifierSpec(name="ft", path=str(fasttext_path)),
                                         ClassifierSpec(name="edu", path=str(embedding_dir), max_length=128)))
    fingerprint = fingerprint_files([p for p, _ in shards])
    out = tmp_path / "classify"
    stats, key = run_classify_stage(client, config, shards, fingerprint, out, batch_rows=16, progress=lambda m: None)
    assert stats.docs_in == stats.docs_out == 120 and not stats.dropped

    table = pq.read_table(sorted(str(p) for p in out.glob("part-*.parquet")))
    assert table.num_rows == 120
    thresholds = load_thresholds(out / "thresholds.json")
    for name in ("ft", "edu"):  # buckets follow the saved cuts; the ensemble is their max
        assert table[f"bucket_{name}"].to_pylist() == assign_buckets(table[f"score_{name}"].to_numpy(),
                                                                     thresholds[name].cuts).tolist()
    ensemble = np.maximum(table["bucket_ft"].to_numpy(), table["bucket_edu"].to_numpy())
    assert table["quality_bucket"].to_pylist() == ensemble.tolist()
    assert table["quality_level"].to_pylist() == quality_levels(ensemble).tolist()

    quality = json.loads((out / "quality.json").read_text())
    n_bytes = np.array([len(t.encode()) for t in table["text"].to_pylist()])
    assert sum(v["docs"] for v in quality["levels"].values()) == 120
    assert sum(v["bytes"] for v in quality["levels"].values()) == n_bytes.sum()
    shares = np.array(quality["buckets"]["ft"]["bytes"]) / n_bytes.sum()
    assert abs(shares.sum() - 1) < 1e-9 and shares.max() < 0.15  # 120 docs: coarse, but spread out
    assert all((out / f"buckets_{n}.png").stat().st_size > 1000 for n in ("ft", "edu", "ensemble"))

    # The same stage over the same inputs is finished: skipped, same key.
    again, key_again = run_classify_stage(client, config, shards, fingerprint, out, progress=lambda m: None)
    assert key_again == key and again.docs_out == 120

    # A later crawl reuses the saved cuts: buckets come from them, not from its own percentiles.
    reuse = ClassifyConfig(classifiers=config.classifiers, thresholds=str(out / "thresholds.json"))
    later = tmp_path / "later"
    run_classify_stage(client, reuse, shards[:1], fingerprint_files([shards[0][0]]), later, progress=lambda m: None)
    first = pq.read_table(later / "part-00000.parquet")
    assert first["bucket_ft"].to_pylist() == table.slice(0, 40)["bucket_ft"].to_pylist()

    # That crawl grows by a shard: only the new shard is scored and bucketed; the first is reused untouched.
    first_version = (later / "part-00000.parquet").stat().st_mtime_ns
    messages: list[str] = []
    grown, _ = run_classify_stage(client, reuse, shards[:2], fingerprint_files([p for p, _ in shards[:2]]), later,
                                  progress=messages.append)
    assert grown.docs_out == 80
    assert "classify: scored 1 shards (1 scored earlier) with ft, edu" in messages
    assert "classify: 1 of 2 shards finished earlier, reused" in messages
    assert (later / "part-00000.parquet").stat().st_mtime_ns == first_version
    assert len(list((later / "_scores").glob("part-*.parquet"))) == 2
    second = pq.read_table(later / "part-00001.parquet")
    assert second["quality_bucket"].to_pylist() == table.slice(40, 40)["quality_bucket"].to_pylist()

    # The one-table stage gives the same columns without Dask.
    direct = ClassifyStage(config, thresholds).run(pq.read_table(shards[0][0]))
    assert direct["quality_bucket"].to_pylist() == table.slice(0, 40)["quality_bucket"].to_pylist()


def test_reused_thresholds_must_match_the_model(client, shards, tmp_path: Path, fasttext_path, embedding_dir):
    from classifiers.thresholds import ClassifierThresholds, save_thresholds

    save_thresholds({"ft": ClassifierThresholds(name="ft", kind="fasttext", fingerprint="0" * 32,
                                                cuts=tuple(np.linspace(0, 1, 19)), docs=1, bytes=1)},
                    tmp_path / "old.json")
    config = ClassifyConfig(classifiers=(ClassifierSpec(name="ft", path=str(fasttext_path)),),
                            thresholds=str(tmp_path / "old.json"))
    with pytest.raises(StageFailed, match="stage classify failed: .*computed for another model"):
        run_classify_stage(client, config, shards[:1], "x", tmp_path / "out", progress=lambda m: None)
