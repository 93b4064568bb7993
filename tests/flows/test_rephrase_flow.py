"""The rephrase stage inside the curate flow: synthetic rows beside the curated shards."""

import json

import pyarrow.parquet as pq
import pytest
from distributed import LocalCluster

from flows.demo.stub_server import StubServer
from flows.config.curate import ConfigError, load_curate_config
from flows.curate import curate


def test_rephrase_runs_last_and_curated_stays_the_filtered_documents(small_crawl, tmp_path, prefect_api):
    workdir = tmp_path / "work"
    with StubServer() as server, LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        config = load_curate_config(
            None, inputs=[{"path": str(small_crawl / "extra.jsonl.gz")}], workdir=str(workdir),
            dask={"scheduler": cluster.scheduler_address},
            rephrase={"backend": "http", "http": {"endpoint": server.url, "model": "stub"},
                      "missing_quality": "high", "tasks": ["distill", "knowledge_list"]})
        assert config.stages[-1] == "rephrase" and "classify" not in config.stages
        stats = curate(config.model_copy(update={"stages": ["extract", "langid", "rephrase"]}))
    assert [s.name for s in stats] == ["extract", "langid", "rephrase"]
    summary = json.loads((workdir / "stats.json").read_text())["stages"]
    rephrase = summary[-1]
    assert rephrase["docs_in"] == rephrase["docs_out"] + sum(rephrase["dropped"].values()) and rephrase["docs_out"] > 0
    curated = pq.read_table(sorted(workdir.glob("curated/part-*.parquet")))
    assert curated.num_rows == summary[1]["docs_out"] and "synthetic_kind" not in curated.column_names
    synthetic = pq.read_table(sorted(workdir.glob("rephrase/part-*.parquet")))
    assert set(synthetic["synthetic_kind"].to_pylist()) == {"distill", "knowledge_list"}
    assert set(synthetic["parent_id"].to_pylist()) <= set(curated["id"].to_pylist())


def test_rephrase_needs_a_backend():
    assert "rephrase" not in load_curate_config(None).stages
    with pytest.raises(ConfigError, match="rephrase.backend is not set"):
        load_curate_config(None, stages=["rephrase"])
