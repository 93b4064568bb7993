"""The rephrase stage end to end: routing, rows, accounting, resumption (also after SIGKILL)."""

import glob
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.demo.stub_server import StubServer
from curation.synthetic.chunking import ApproxTokenCounter
from curation.synthetic.config import HttpBackendConfig, PostprocessConfig, RephraseConfig
from curation.synthetic.stage import plan_batch, plan_metadata, plan_shard, unit_id
from curation.synthetic.tasks import TASK_NAMES
from flows.cli import main
from flows.engine.stage_dir import fingerprint_files
from flows.engine.rephrase import run_rephrase_stage

HQ_TASKS = TASK_NAMES[1:]


def _rows(out: Path) -> pa.Table:
    return pq.read_table(sorted(glob.glob(str(out / "part-*.parquet"))))


def test_plan_routes_by_quality_bucket_and_language(documents):
    config = RephraseConfig(backend="http")
    plan = plan_batch(documents, 0, config, ApproxTokenCounter())
    kinds = {}
    for parent, kind in zip(plan["parent_id"].to_pylist(), plan["synthetic_kind"].to_pylist()):
        kinds.setdefault(parent, set()).add(kind)
    buckets = dict(zip(documents["id"].to_pylist(), documents["quality_bucket"].to_pylist()))
    for parent, bucket in buckets.items():
        assert kinds[parent] == ({"wiki"} if bucket <= 11 else set(HQ_TASKS)), (parent, bucket)
    for row in plan.to_pylist():
        assert row["id"] == unit_id(row["parent_id"], row["synthetic_kind"], row["chunk_index"])
        assert row["chunk_tokens"] <= config.input_budget(row["synthetic_kind"])
    assert len(set(plan["id"].to_pylist())) == plan.num_rows

    production = plan_batch(documents, 0, RephraseConfig(backend="http", high_quality_buckets=(18, 19)),
                            ApproxTokenCounter())
    not_routed = production.filter(pa.compute.equal(production["plan_reason"], "not_routed"))
    assert set(not_routed["parent_id"].to_pylist()) == {p for p, b in buckets.items() if 12 <= b <= 17}

    odd = documents.slice(0, 3).set_column(documents.column_names.index("language"), "language",
                                           pa.array(["fr", "en", "en"]))
    odd = odd.set_column(1, "text", pa.array([odd["text"][0].as_py(), "   ", odd["text"][2].as_py()]))
    reasons = plan_batch(odd, 0, config, ApproxTokenCounter())["plan_reason"].to_pylist()
    assert Counter(reasons)["language_not_rephrased"] == 1 and Counter(reasons)["empty_text"] == 1


def test_max_docs_counts_the_documents_that_are_rephrased(tmp_path, shards):
    config = RephraseConfig(backend="http", high_quality_buckets=(18, 19))  # bucket 15 (doc03) is not routed
    info = plan_shard(shards[0], tmp_path / "plan.parquet", config, ApproxTokenCounter(), max_docs=4,
                      batch_rows=2, strict=False)
    plan = pq.read_table(tmp_path / "plan.parquet")
    assert (info.rephrased, info.documents) == (4, 5)  # doc00..doc04, of which doc03 goes nowhere
    assert set(plan["parent_id"].to_pylist()) == {f"doc0{i}" for i in range(5)}
    assert plan_metadata(tmp_path / "plan.parquet")["documents"] == "5"


def test_documents_without_quality_columns(documents):
    bare = documents.select(["id", "text"])
    with pytest.raises(ValueError, match="without quality_bucket or quality_level.*missing_quality"):
        plan_batch(bare, 0, RephraseConfig(backend="http"), ApproxTokenCounter(), "bare.jsonl")
    plan = plan_batch(bare, 0, RephraseConfig(backend="http", missing_quality="high"), ApproxTokenCounter())
    assert set(plan["synthetic_kind"].to_pylist()) == set(HQ_TASKS)


def test_stage_over_http_rows_accounting_and_reruns(tmp_path, shards, documents):
    duplicate = documents.slice(0, 1).set_column(0, "id", pa.array(["copy-of-doc00"]))
    pq.write_table(duplicate, tmp_path / "in" / "part-2.parquet")  # the same text again: the same answers
    inputs = [(p, "") for p in [*shards, str(tmp_path / "in" / "part-2.parquet")]]
    fingerprint = fingerprint_files([p for p, _ in inputs])
    out = tmp_path / "rephrase"
    with StubServer(faults=["500"]) as server:
        config = RephraseConfig(backend="http", http=HttpBackendConfig(
            endpoint=server.url, model="stub", concurrency=1, max_retries=0, batch_size=8))
        stats, key = run_rephrase_stage(config, inputs, fingerprint, out, progress=lambda m: None)
        requests = server.requests
        assert stats.docs_in == stats.docs_out + sum(stats.dropped.values())
        assert stats.dropped["request_failed"] == 1 and stats.dropped["exact_duplicate"] >= 1
        rows = _rows(out)
        assert rows.num_rows == stats.docs_out > 20 and len(set(rows["id"].to_pylist())) == rows.num_rows
        parents = {r["id"]: r for r in documents.to_pylist()} | {"copy-of-doc00": documents.to_pylist()[0]}
        for row in rows.to_pylist():
            parent = parents[row["parent_id"]]
            assert row["id"] == unit_id(row["parent_id"], row["synthetic_kind"], row["chunk_index"])
            assert (row["quality_bucket"], row["quality_level"], row["url"]) == (
                parent["quality_bucket"], parent["quality_level"], parent["url"])
            assert row["language"] == "en" and row["n_tokens"] is None  # no tokenizer: counts are estimates
            assert not row["text"].startswith("Here")
        assert set(rows["synthetic_kind"].to_pylist()) == set(TASK_NAMES)
        qa = rows.filter(pa.compute.equal(rows["synthetic_kind"], "diverse_qa"))["text"].to_pylist()
        assert all("\n\nQuestion: " in t for t in qa)

        summary = json.loads((out / "stats.json").read_text())
        assert summary["rephrase"]["request_errors"] == {"http_500": 1}
        assert sum(t["chunks"] for t in summary["rephrase"]["tasks"].values()) == requests
        assert summary["rephrase"]["documents"] == 13

        # Finished: a rerun sends nothing. New post-processing re-finishes from the saved answers.
        again, key_again = run_rephrase_stage(config, inputs, fingerprint, out, progress=lambda m: None)
        assert key_again == key and again.docs_out == stats.docs_out and server.requests == requests
        stricter = RephraseConfig(**{**config.__dict__, "postprocess": PostprocessConfig(min_output_tokens=200)})
        strict_stats, strict_key = run_rephrase_stage(stricter, inputs, fingerprint, out, progress=lambda m: None)
        assert strict_key != key and server.requests == requests
        assert strict_stats.docs_out < stats.docs_out and strict_stats.dropped["too_short"] > stats.dropped.get("too_short", 0)


def _cli(args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "flows.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, text=True)


def test_a_run_killed_mid_way_resumes_with_every_chunk_exactly_once(tmp_path, shards, tiny_model):
    args = ["rephrase", "--input", *shards, "--backend", "local", "--model", str(tiny_model), "--max-new-tokens", "6",
            "--batch-size", "2", "--tasks", "wiki,knowledge_list", "--prefill"]
    config = tmp_path / "threads.yaml"
    config.write_text("rephrase:\n  local: {torch_threads: 1}\n  postprocess: {min_output_tokens: 0, check_language: false,"
                      " drop_truncated: false}\n")
    assert main([*args, "--config", str(config), "--output", str(tmp_path / "straight")]) == 0

    out = tmp_path / "killed"
    victim = _cli([*args, "--config", str(config), "--output", str(out)])
    deadline = time.monotonic() + 300
    while len(list(out.glob("_generations/part-00000/b*.parquet"))) < 3:
        assert victim.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not (out / "_SUCCESS").exists()
    assert main([*args, "--config", str(config), "--output", str(out)]) == 0

    answered = Counter(i for p in out.glob("_generations/*/b*.parquet") for i in pq.read_table(p)["id"].to_pylist())
    planned = pq.read_table(sorted(out.glob("_plan/*.parquet")))
    to_send = planned.filter(pa.compute.is_null(planned["plan_reason"]))["id"].to_pylist()
    assert set(answered) == set(to_send) and set(answered.values()) == {1}  # each chunk exactly once
    # Seeds per chunk: the resumed run wrote the same rows as the uninterrupted one.
    assert _rows(out).sort_by("id").equals(_rows(tmp_path / "straight").sort_by("id"))


def test_the_example_config_is_the_defaults_with_a_server():
    from flows.cli.rephrase import load_rephrase_config

    example = load_rephrase_config("examples/rephrase.yaml")
    assert example == RephraseConfig(backend="http", http=example.http)
    assert example.http.endpoint == "http://localhost:8000/v1" and example.http == HttpBackendConfig(
        endpoint=example.http.endpoint, model=example.http.model)
    # Command-line options go to the section of the backend the file chose.
    from flows.cli.main import build_parser

    args = build_parser().parse_args(["rephrase", "--input", "x", "--output", "y", "--config", "examples/rephrase.yaml",
                                      "--model", "served-name", "--concurrency", "4", "--high-quality-buckets", "18-19"])
    config = load_rephrase_config(args.config, args)
    assert (config.http.model, config.http.concurrency, config.local.model) == ("served-name", 4, None)
    assert config.high_quality_buckets == (18, 19) and config.http.endpoint == example.http.endpoint


def test_cli_errors_are_one_line(tmp_path, shards, capsys):
    assert main(["rephrase", "--input", *shards, "--output", str(tmp_path / "o"), "--backend", "local"]) == 2
    assert "rephrase.local.model is not set" in capsys.readouterr().err
    assert main(["rephrase", "--input", *shards, "--output", str(tmp_path / "o"), "--backend", "local",
                 "--model", str(tmp_path)]) == 2
    assert "not a model directory (no config.json)" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("rephrase:\n  backend: http\n  temprature: 0.3\n")
    assert main(["rephrase", "--config", str(bad), "--input", *shards, "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.yaml: rephrase.temprature: Unexpected keyword argument" in err
    assert main(["rephrase", "--input", *shards, "--output", str(tmp_path / "o"), "--tasks", "wiki,poems",
                 "--endpoint", "http://localhost:1/v1", "--model", "m"]) == 2
    assert "unknown rephrase task(s) ['poems']" in capsys.readouterr().err
