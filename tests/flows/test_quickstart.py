import json

import pyarrow.parquet as pq
import pytest


@pytest.mark.slow
def test_quickstart_runs_from_crawl_to_an_exported_model(quickstart_run):
    workdir, proc = quickstart_run.workdir, quickstart_run.process  # tests/conftest.py: one run per session
    assert sorted(p.name for p in (workdir / "crawl").glob("*.warc.gz"))
    stages = json.loads((workdir / "curation" / "stats.json").read_text())["stages"]
    assert [s["name"] for s in stages] == ["extract", "langid", "exact-dedup", "fuzzy-dedup", "substring-dedup",
                                           "classify", "heuristics", "rephrase"]
    cut = stages[4]["counters"]
    assert cut["spans_removed"] > 0 and stages[4]["bytes_in"] - stages[4]["bytes_out"] >= cut["bytes_removed"]
    assert stages[0]["docs_in"] >= 400
    for stage in stages:
        assert stage["docs_in"] == stage["docs_out"] + sum(stage["dropped"].values())
    curated = pq.read_table(workdir / "curation" / "curated")
    assert curated.num_rows == stages[-2]["docs_out"] > 0
    # three classifiers, the third trained on annotations (the stub server's noise scores)
    ensemble = json.loads((workdir / "classifiers" / "ensemble.json").read_text())["classifiers"]
    assert [c["name"] for c in ensemble] == ["fasttext_hq", "edu_minilm", "edu_llm"]
    assert json.loads((workdir / "annotate" / "stats.json").read_text())["annotated"] == 128
    assert {"score_edu_llm", "bucket_edu_llm"} <= set(curated.column_names)
    synthetic = pq.read_table(sorted((workdir / "curation" / "rephrase").glob("part-*.parquet")))
    assert synthetic.num_rows == stages[-1]["docs_out"] > 0
    assert set(synthetic["parent_id"].to_pylist()) <= set(curated["id"].to_pylist())
    assert len(set(curated["language"].to_pylist())) >= 5
    assert "curated Parquet:" in proc.stdout and "synthetic (rephrase):" in proc.stdout
    assert "## Funnel" in (workdir / "curation" / "report.md").read_text()
    # tokens, mixture, training and export
    mixture = (workdir / "data" / "mixture.yaml").read_text()
    assert "high-quality" in mixture and "synthetic" in mixture
    records = [json.loads(line) for line in (workdir / "train" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 61))
    assert sum(r["loss"] for r in records[-5:]) / 5 < sum(r["loss"] for r in records[:5]) / 5 - 1.0
    hf = workdir / "model-hf"
    assert json.loads((hf / "config.json").read_text())["model_type"] == "nemotron_h"
    assert (hf / "model.safetensors").is_file() and (hf / "tokenizer.json").is_file()
    assert "Hugging Face model:" in proc.stdout
    assert f"run report:            {workdir / 'report.html'}" in proc.stdout
    html = (workdir / "report.html").read_text()
    assert "Training" in html and html.count("data:image/png;base64,") >= 6
