"""`ccforge curate --scheduler` on a cluster of separate `dask scheduler` and `dask worker` processes
gives the curated shards of a LocalCluster run, with the work spread over both workers."""

import json
from collections import Counter, defaultdict

import pytest
from dask.utils import key_split
from distributed import Client

from ccforge_processes import MODEL_FREE_STAGES, assert_same_curated, curate_args, run_ccforge
from dask_processes import dask_cluster_processes


@pytest.mark.slow
def test_curate_on_a_scheduler_and_two_worker_processes(sample_crawl, curated_reference, tmp_path):
    workdir = tmp_path / "work"
    with dask_cluster_processes(tmp_path / "cluster", workers=2) as address, Client(address) as client:
        assert address.startswith("tcp://127.0.0.1:")
        workers = set(client.scheduler_info()["workers"])
        client.get_task_stream()  # the scheduler records every task from now on
        result = run_ccforge(curate_args(sample_crawl, workdir, "--scheduler", address), cwd=tmp_path)
        tasks = client.get_task_stream()
        assert set(client.scheduler_info()["workers"]) == workers, "a worker died or was replaced"
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stages = MODEL_FREE_STAGES.split(",")
    assert [s["name"] for s in json.loads((workdir / "stats.json").read_text())["stages"]] == stages
    assert all((workdir / stage / "_SUCCESS").exists() for stage in [*stages, "curated"])
    assert_same_curated(workdir, curated_reference)

    # Both workers ran shard tasks, and the global passes' tasks ran on the cluster too.
    by_worker = Counter(task["worker"] for task in tasks if task.get("status") == "OK")
    assert set(by_worker) == workers and min(by_worker.values()) >= 5, by_worker
    ran_on = defaultdict(set)  # task name (the function, as Dask keys it) -> workers
    for task in tasks:
        ran_on[key_split(task["key"])].add(task["worker"])
    assert ran_on["build_and_run_shard"] == workers, dict(ran_on)
    assert ran_on["hash_shard"] and ran_on["minhash_shard"], sorted(ran_on)
