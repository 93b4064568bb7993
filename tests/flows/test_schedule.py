"""`ccforge schedule`: a served Prefect deployment of curate on an interval, against the Prefect
server ccforge starts; `ccforge pipeline` config checks; retry conditions."""

from __future__ import annotations

import json
import gzip
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from distributed import KilledWorker

from flows.cli import main
from flows.errors import StageFailed
from flows.config.pipeline import load_pipeline_config
from flows.pretrain import TrainingFailed
from flows.retry import is_transient
from warc_fixtures import html_record, write_warc


def _write_crawl(handbook_pages, crawl: Path, later: Path) -> None:
    pages = [p for lang in ("en-US", "de-DE") for p in handbook_pages[lang][30:42]]
    crawl.mkdir()
    later.mkdir()
    for k in range(3):
        write_warc((crawl if k < 2 else later) / f"part-{k}.warc.gz", [html_record(p) for p in pages[k::3]])


def _runs(workdir: Path) -> list[dict]:
    path = workdir / "runs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _wait_for(condition, process: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"ccforge schedule exited with {process.returncode} before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


@pytest.mark.slow
def test_scheduled_curate_runs_twice_then_picks_up_a_new_crawl_file(handbook_pages, tmp_path):
    crawl, later = tmp_path / "crawl", tmp_path / "later"
    _write_crawl(handbook_pages, crawl, later)
    workdir = tmp_path / "work"
    config = tmp_path / "curate.yaml"
    config.write_text(yaml.safe_dump({"inputs": [{"path": str(crawl)}], "workdir": str(workdir),
                                      "stages": ["extract", "langid", "exact-dedup", "heuristics"],
                                      "dask": {"workers": 1}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect-home"), "PYTHONUNBUFFERED": "1",
            "PREFECT_RUNNER_POLL_FREQUENCY": "2", "PREFECT_UI_ENABLED": "0"}
    log = open(tmp_path / "schedule.log", "w+")
    process = subprocess.Popen([sys.executable, "-m", "flows.cli", "schedule", str(config), "--interval", "5"],
                               stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        _wait_for(lambda: len(_runs(workdir)) >= 2, process, 300, "two scheduled runs")
        first, second = _runs(workdir)[:2]
        assert [s["shards_written"] for s in first["stages"]] == [2, 2, 2, 2]
        assert [s["shards_written"] for s in second["stages"]] == [0, 0, 0, 0]  # nothing new: no work repeated
        assert second["stages"][-1]["docs_out"] == first["stages"][-1]["docs_out"] > 0

        # A crawl file arrives: the next run curates it alone.
        shutil.copy2(later / "part-2.warc.gz", crawl / "part-2.warc.gz")
        _wait_for(lambda: any(r["stages"][0]["shards"] == 3 for r in _runs(workdir)), process, 300,
                  "a run over the new file")
        grown = next(r for r in _runs(workdir) if r["stages"][0]["shards"] == 3)
        assert [s["shards_written"] for s in grown["stages"]] == [1, 1, 1, 1]

        # The server ccforge started knows the deployment's runs and that they completed.
        log.seek(0)
        url = re.search(r"Prefect server \(with its scheduler\) at (http://\S+)", log.read()).group(1)
        completed = {"flow_runs": {"deployment_id": {"is_null_": False}, "state": {"type": {"any_": ["COMPLETED"]}}}}
        _wait_for(lambda: httpx.post(f"{url}/api/flow_runs/count", json=completed, timeout=10).json() >= 3, process, 120,
                  "three completed flow runs in the Prefect API")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def test_schedule_and_pipeline_reject_bad_arguments_in_one_line(tmp_path, capsys):
    config = tmp_path / "curate.yaml"
    config.write_text(yaml.safe_dump({"inputs": [{"path": str(tmp_path)}], "stages": ["extract", "dedup"]}))
    assert main(["schedule", str(config), "--interval", "60"]) == 2
    assert "stages: unknown stage(s) ['dedup']" in capsys.readouterr().err
    assert main(["schedule", str(config), "--cron", "0 3 * *x *"]) == 2
    assert "--cron '0 3 * *x *': not a cron expression" in capsys.readouterr().err
    assert main(["schedule", str(config), "--interval", "0"]) == 2
    assert "--interval 0.0: must be positive" in capsys.readouterr().err

    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump({"workdir": str(tmp_path / "p"), "curate": {"batch_rows": 0}}))
    assert main(["pipeline", str(pipeline)]) == 2
    assert capsys.readouterr().err.strip().endswith("curate.batch_rows: Input should be greater than or equal to 1")
    pipeline.write_text(yaml.safe_dump({"training": {"train": {"max_steps": 0}}}))
    assert main(["pipeline", str(pipeline)]) == 2
    assert "training.train.max_steps: Input should be greater than" in capsys.readouterr().err
    pipeline.write_text(yaml.safe_dump({"workdir": str(tmp_path / "p")}))
    assert main(["pipeline", str(pipeline), "--max-steps", "-1"]) == 2
    assert "training.train.max_steps: Input should be greater than" in capsys.readouterr().err


def test_example_pipeline_config_is_valid():
    config = load_pipeline_config(Path(__file__).parents[2] / "examples" / "pipeline.yaml")
    assert config.curate.workdir == str(config.workdir / "curation")
    assert config.training.train["model"]["preset"] == "tiny"


def test_only_infrastructure_failures_are_retried():
    lost_worker = StageFailed("stage extract failed on part-0.warc.gz: worker died")
    lost_worker.__cause__ = KilledWorker("task", "tcp://127.0.0.1:1", allowed_failures=3)
    bad_input = StageFailed("stage extract failed on part-0.warc.gz: not gzip")
    bad_input.__cause__ = ValueError("not gzip")
    missing = StageFailed("stage extract failed on part-0.warc.gz: gone")
    missing.__cause__ = FileNotFoundError("part-0.warc.gz")
    assert is_transient(lost_worker) and is_transient(ConnectionResetError())
    assert not is_transient(bad_input) and not is_transient(missing)
    for damaged in (gzip.BadGzipFile("Not a gzipped file (b'th')"), OSError("Couldn't deserialize thrift")):
        corrupt = StageFailed("stage extract failed on part-0.jsonl.gz: damaged")
        corrupt.__cause__ = damaged  # what gzip and pyarrow raise for damaged bytes
        assert not is_transient(corrupt)
    assert TrainingFailed(-9, ["killed"]).killed
    assert TrainingFailed(1, ["traceback : Signal 9 (SIGKILL) received by PID 7"]).killed
    assert not TrainingFailed(1, ["NonFiniteLossError: step 12"]).killed


def test_prefect_retries_a_task_on_a_lost_connection_but_not_on_bad_data(prefect_api):
    from prefect import flow, task

    from flows.retry import retry_if_transient

    attempts: list[str] = []

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_if_transient)
    def flaky(error: type[Exception]) -> str:
        attempts.append(error.__name__)
        if len(attempts) == 1:
            raise error("first attempt fails")
        return "done"

    @flow
    def run(error: type[Exception]) -> str:
        return flaky(error)

    assert run(ConnectionResetError) == "done" and attempts == ["ConnectionResetError"] * 2
    attempts.clear()
    with pytest.raises(ValueError, match="first attempt fails"):
        run(ValueError)
    assert attempts == ["ValueError"]
