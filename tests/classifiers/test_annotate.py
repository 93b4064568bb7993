"""LLM annotation: the score parser, runs against the stub OpenAI-compatible server with scripted
answers (exact counts, resumption by request count), a local demo model, and a regression head
trained on the annotated set through `ccforge classifiers train`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from classifiers.annotate import ANNOTATION_SCHEMA, AnnotateConfig, load_annotation_prompt, parse_score, run_annotate
from classifiers.stage import ClassifierSpec, load_classifier
from classifiers.training_set import TRAINING_SET_SCHEMA, read_labelled, split
from flows.cli import main
from flows.demo import stub_server
from flows.demo.stub_server import StubServer

PREFIX = 120  # characters of a document that identify it in a prompt


def read_chunks(output: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(p, schema=ANNOTATION_SCHEMA) for p in sorted(output.glob("chunks/*.parquet")))


@pytest.mark.parametrize(("answer", "expected"), [
    ("The extract teaches SQL joins with examples.\nEducational score: 4", (4, None)),
    ("Educational score: 0", (0, None)),
    ("Justification.\n**Educational score: 5**", (5, None)),
    ("Educational Score:**2**", (2, None)),
    ("educational score : (3).", (3, None)),
    ("Educational score: 4/5", (4, None)),
    ("Educational score:\n 3", (3, None)),  # the score on the next line
    ("First Educational score: 1, on reflection Educational score: 3", (3, None)),  # the last one counts
    ("Educational score: Educational score: 2", (2, None)),
    ("Educational score: 2, then Educational score: <points>", (None, "not_a_number")),
    ("Educational score: three", (None, "not_a_number")),
    ("Educational score:", (None, "not_a_number")),
    ("Educational score: 3.5", (None, "not_integer")),
    ("Educational score: 7", (None, "out_of_range")),
    ("Educational score: -1", (None, "out_of_range")),
    ("Educational score: 8/10", (None, "wrong_scale")),
    ("I would give this page a 4.", (None, "no_score")),
    ("   \n", (None, "empty_answer")),
    (None, (None, "empty_answer")),
])
def test_parse_score(answer, expected):
    assert parse_score(answer) == expected


def test_packaged_prompt_and_a_prompt_file(tmp_path: Path):
    prompt = load_annotation_prompt("educational_value")
    assert prompt.system is None and "Educational score: <points>" in prompt.user
    assert prompt.user_message("DOC").count("DOC") == 1
    (tmp_path / "mine.yaml").write_text("system: Be strict.\nuser: 'Score it: {document}'\n")
    assert load_annotation_prompt(str(tmp_path / "mine.yaml")).user_message("x") == "Score it: x"
    (tmp_path / "bad.yaml").write_text("user: no placeholder\n")
    with pytest.raises(ValueError, match="must contain {document} exactly once"):
        load_annotation_prompt(str(tmp_path / "bad.yaml"))
    with pytest.raises(FileNotFoundError, match="neither a packaged prompt"):
        load_annotation_prompt("no_such_prompt")


# ------------------------------------------------------------------------------ stub server runs


@pytest.fixture(scope="module")
def documents(labelled: pa.Table) -> pa.Table:
    """Reference pages and changelogs (no licence texts: copyright files quote them) with distinct openings."""
    rows, seen = [], set()
    for row in labelled.to_pylist():
        if row["source"] != "licence" and row["text"][:PREFIX] not in seen:
            seen.add(row["text"][:PREFIX])
            rows.append(row)
    return pa.Table.from_pylist(rows, schema=labelled.schema)


def script(monkeypatch: pytest.MonkeyPatch, texts: list[str], answers: list[str]) -> None:
    """The stub server answers the prompt that carries `texts[i]` with `answers[i]`."""
    def answer(prompt: str, max_tokens: int, continue_final: str | None) -> tuple[str, str, int]:
        [picked] = [a for t, a in zip(texts, answers) if t[:PREFIX] in prompt]
        return picked, "stop", len(picked.split())

    monkeypatch.setattr(stub_server, "answer", answer)


def http_config(server: StubServer, **settings) -> AnnotateConfig:
    http = {"endpoint": server.url, "model": "stub", "concurrency": 1, "max_retries": 1, "backoff_s": 0.01}
    return AnnotateConfig(**{"backend": "http", "http": http} | settings)


def write_jsonl(path: Path, rows: list[dict], extra_lines: tuple[str, ...] = ()) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "".join(f"{line}\n" for line in extra_lines))
    return str(path)


SCRIPTED = ["Some value.\nEducational score: 1",  # row 0: its request meets the two injected 500s
            "A clear tutorial with exercises.\nEducational score: 4", "Educational score: 0",
            "**Educational score: 5**", "Educational score: 2/5", "It is fine.", "Educational score: 7",
            "Educational score: 3.5"]


def test_stub_server_counts_every_document(tmp_path: Path, documents: pa.Table, monkeypatch):
    docs = documents.slice(0, len(SCRIPTED)).to_pylist()
    script(monkeypatch, [d["text"] for d in docs], SCRIPTED)
    rows = [{"id": d["id"], "text": d["text"]} for d in docs] + [{"id": "empty", "text": "  "}]
    inputs = write_jsonl(tmp_path / "docs.jsonl", rows, extra_lines=("{not json",))
    # concurrency 1: requests go out in document order, so the first one meets both faults
    with StubServer(faults=["500", "500"]) as server:
        stats = run_annotate(http_config(server, chunk_docs=4), [inputs], tmp_path / "out", fingerprint="f",
                             progress=lambda _: None)
        requests = server.requests
    assert requests == len(SCRIPTED) + 1  # one retry; the empty text and the bad line are never sent
    assert (stats.documents, stats.annotated) == (10, 4)
    assert stats.unparseable == {"no_score": 1, "out_of_range": 1, "not_integer": 1}
    assert stats.failed == {"http_500": 1, "empty_text": 1, "bad_json": 1}
    assert stats.scores == {"0": 1, "1": 0, "2": 1, "3": 0, "4": 1, "5": 1}
    saved = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert saved["documents"] == 10 and saved["this_run"]["chunks_annotated"] == 3
    chunks = read_chunks(tmp_path / "out")
    failed = chunks.filter(pa.compute.equal(chunks["reason"], "http_500"))
    assert failed["id"].to_pylist() == [docs[0]["id"]] and failed["attempts"].to_pylist() == [2]
    training = pq.read_table(tmp_path / "out" / "training_set.parquet")
    assert training.schema == TRAINING_SET_SCHEMA
    assert dict(zip(training["id"].to_pylist(), training["score"].to_pylist())) == {
        docs[1]["id"]: 4.0, docs[2]["id"]: 0.0, docs[3]["id"]: 5.0, docs[4]["id"]: 2.0}
    assert dict(zip(training["id"].to_pylist(), training["label"].to_pylist())) == {
        docs[1]["id"]: "hq", docs[2]["id"]: "cc", docs[3]["id"]: "hq", docs[4]["id"]: "cc"}
    assert set(training["text"].to_pylist()) == {d["text"] for d in docs[1:5]}


def test_a_rerun_sends_only_unfinished_chunks(tmp_path: Path, documents: pa.Table, monkeypatch):
    docs = documents.slice(0, 10).to_pylist()
    script(monkeypatch, [d["text"] for d in docs], [f"Educational score: {i % 6}" for i in range(10)])
    inputs = write_jsonl(tmp_path / "docs.jsonl", [{"id": d["id"], "text": d["text"]} for d in docs])

    def killed_after_first_chunk(line: str) -> None:
        if line.startswith("annotate: chunk 0:"):
            raise KeyboardInterrupt

    with StubServer() as server:
        config = http_config(server, chunk_docs=4, max_docs=6)
        with pytest.raises(KeyboardInterrupt):
            run_annotate(config, [inputs], tmp_path / "out", fingerprint="f", progress=killed_after_first_chunk)
        assert server.requests == 4
        run_annotate(config, [inputs], tmp_path / "out", fingerprint="f", progress=lambda _: None)
        assert server.requests == 4 + 2  # chunk 1 only, cut at max_docs
        run_annotate(config, [inputs], tmp_path / "out", fingerprint="f", progress=lambda _: None)
        assert server.requests == 6  # nothing left
        # without max_docs, chunk 1 holds 4 documents (annotated again) and chunk 2 the last 2; chunk 0 stays
        stats = run_annotate(http_config(server, chunk_docs=4), [inputs], tmp_path / "out", fingerprint="f",
                             progress=lambda _: None)
        assert server.requests == 6 + 4 + 2
        # another prompt setting, or other inputs, make another key: everything is annotated again
        run_annotate(http_config(server, chunk_docs=4, max_input_chars=500), [inputs], tmp_path / "out",
                     fingerprint="f", progress=lambda _: None)
        assert server.requests == 12 + 10
        run_annotate(http_config(server, chunk_docs=4, max_input_chars=500), [inputs], tmp_path / "out",
                     fingerprint="g", progress=lambda _: None)
        assert server.requests == 22 + 10
    assert (stats.documents, stats.annotated) == (10, 10)
    training = pq.read_table(tmp_path / "out" / "training_set.parquet")
    assert sorted(training["id"].to_pylist()) == sorted(d["id"] for d in docs)


def test_the_stub_server_scores_annotation_prompts(tmp_path: Path, documents: pa.Table):
    """The quick start's annotator: every answer parses, the score is a hash of the prompt (noise, but fixed)."""
    pq.write_table(documents.slice(0, 24), tmp_path / "docs.parquet")
    with StubServer() as server:
        config = http_config(server)
        runs = [run_annotate(config, [str(tmp_path / "docs.parquet")], tmp_path / out, fingerprint="f",
                             progress=lambda _: None) for out in ("a", "b")]
        assert server.requests == 2 * 24
    assert runs[0] == runs[1] and runs[0].annotated == 24 and sum(n > 0 for n in runs[0].scores.values()) >= 4
    answer = read_chunks(tmp_path / "a")["answer"][0].as_py()
    assert answer.startswith("Below is an extract from a web Judge") and answer.splitlines()[-1].startswith("Educational score: ")


def test_bad_settings_are_one_line_errors(tmp_path: Path, capsys):
    (tmp_path / "annotate.yaml").write_text("backend: http\nhttp: {endpoint: 'http://127.0.0.1:9/v1'}\n")
    (tmp_path / "docs.jsonl").write_text('{"id": "a", "text": "some text"}\n')
    args = ["classifiers", "annotate", str(tmp_path / "annotate.yaml"), "--input", str(tmp_path / "docs.jsonl"),
            "--output", str(tmp_path / "out")]
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == "ccforge classifiers: error: annotate: http needs endpoint " \
                                              "(e.g. http://localhost:8000/v1) and model"
    assert main([*args, "--max-new-tokens", "0"]) == 2
    assert "max_new_tokens: Input should be greater than or equal to 1" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- local model


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory, documents: pa.Table) -> Path:
    """An untrained 2-layer Llama (hidden 32) with a byte-level BPE trained on the documents."""
    import torch

    from flows.demo.demo_model import build_demo_model

    torch.set_num_threads(1)  # tiny matmuls: more threads only add contention on 2 shared cores
    return build_demo_model(documents["text"].to_pylist()[:40], tmp_path_factory.mktemp("demo") / "model",
                            vocab_size=1024, hidden_size=32)


def test_a_local_model_run_is_accounted_for(tmp_path: Path, documents: pa.Table, demo_model: Path):
    pq.write_table(documents.slice(0, 6), tmp_path / "docs.parquet")
    config = AnnotateConfig(backend="local", local={"model": str(demo_model), "batch_size": 4}, max_new_tokens=6,
                            max_input_chars=400, chunk_docs=4)
    stats = run_annotate(config, [str(tmp_path / "docs.parquet")], tmp_path / "out", fingerprint="f",
                         progress=lambda _: None)
    # An untrained model's answers are noise: whatever they are, every document is counted once.
    assert stats.documents == 6 == stats.annotated + sum(stats.unparseable.values())
    assert stats.failed == {} and set(stats.unparseable) <= {"no_score", "not_a_number", "empty_answer"}
    assert 0 < stats.generated_tokens <= 6 * 6 and stats.prompt_tokens > 6 * 100
    chunks = read_chunks(tmp_path / "out")
    assert chunks.num_rows == 6 and chunks["id"].to_pylist() == documents["id"].to_pylist()[:6]
    assert pq.read_table(tmp_path / "out" / "training_set.parquet").schema == TRAINING_SET_SCHEMA


# ---------------------------------------------------------------------- training on the annotations


def test_train_a_regression_head_on_annotations(tmp_path: Path, documents: pa.Table, monkeypatch):
    """Scripted scores that follow the source (documentation 4-5, changelogs 0-1) are learnt."""
    sample = documents.take(np.arange(0, documents.num_rows, max(1, documents.num_rows // 48)))
    texts, labels = sample["text"].to_pylist(), sample["label"].to_pylist()
    answers = [f"Educational score: {(4 if label == 'hq' else 0) + i % 2}" for i, label in enumerate(labels)]
    script(monkeypatch, texts, answers)
    pq.write_table(sample, tmp_path / "docs.parquet")
    with StubServer() as server:
        (tmp_path / "annotate.yaml").write_text(yaml.safe_dump({"backend": "http", "http": {
            "endpoint": server.url, "model": "stub", "concurrency": 4}}))
        assert main(["classifiers", "annotate", str(tmp_path / "annotate.yaml"), "--input", str(tmp_path / "docs.parquet"),
                     "--output", str(tmp_path / "annotated")]) == 0
    annotated = read_labelled(tmp_path / "annotated" / "training_set.parquet")
    assert annotated.num_rows == sample.num_rows and set(annotated["label"].to_pylist()) == {"hq", "cc"}
    config = {"data": str(tmp_path / "annotated" / "training_set.parquet"), "output_dir": str(tmp_path / "models"),
              "classifiers": [{"name": "edu_llm", "kind": "embedding", "embedding": {"max_length": 128}}]}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    assert main(["classifiers", "train", str(tmp_path / "train.yaml")]) == 0
    ensemble = json.loads((tmp_path / "models" / "ensemble.json").read_text())
    assert ensemble["classifiers"] == [{"name": "edu_llm", "kind": "embedding", "path": "edu_llm"}]
    held_out = json.loads((tmp_path / "models" / "eval.json").read_text())["classifiers"]["edu_llm"]
    assert held_out["docs"] == split(annotated, "test").num_rows > 0 and held_out["roc_auc"] >= 0.9
    head = load_classifier(ClassifierSpec(name="edu_llm", path=str(tmp_path / "models" / "edu_llm")))
    assert head.default_threshold == 2.5
    scores = head.score(texts)
    is_doc = np.array(labels) == "hq"
    assert scores[is_doc].mean() - scores[~is_doc].mean() > 2.0
