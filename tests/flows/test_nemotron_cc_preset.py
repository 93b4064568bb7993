"""examples/nemotron-cc.yaml curates the sample crawl: its three classifier paths point at models trained here
(fastText, an embedding regression head and a FineWeb-Edu-format sequence regressor) and its rephrase server
is the stub. Every document is accounted for, the heuristics judge only documents below `high`, the output
holds the five quality levels and the synthetic tasks follow the buckets the preset routes them by."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from distributed import LocalCluster

from classifiers.embedding_classifier import EmbeddingTrainConfig, fit_ridge, resolve_encoder, train_embedding_classifier
from classifiers.ensemble import LEVELS
from classifiers.fasttext_classifier import FastTextTrainConfig, train_fasttext
from classifiers.training_set import TRAIN, TrainingSetConfig, build_training_set, split
from curation.heuristics import HeuristicFilter
from flows.config.curate import BELOW_HIGH_LEVELS, load_curate_config
from flows.curate import curate
from flows.demo.stub_server import StubServer

PRESET = Path(__file__).parents[2] / "examples" / "nemotron-cc.yaml"
MAX_LENGTH = 128  # tokens the two encoders read: enough to tell documentation from licences, fast on 2 cores


def fineweb_edu_format(texts: list[str], scores: np.ndarray, out: Path) -> Path:
    """A released FineWeb-Edu classifier's layout (BertForSequenceClassification, one regression output) on
    MiniLM, its head fitted by ridge regression to the 0-5 scores on the pooled features it reads."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    minilm = resolve_encoder(None)
    torch.manual_seed(0)  # MiniLM ships no pooler weights: they start random, the head is fitted on top of them
    config = BertConfig.from_pretrained(minilm, num_labels=1, problem_type="regression")
    model = BertForSequenceClassification.from_pretrained(minilm, config=config).eval()
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    with torch.inference_mode():
        batch = tokenizer(texts, truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
        pooled_ND = model.bert(**batch).pooler_output.numpy()
    w_D, bias = fit_ridge(pooled_ND, scores, ridge=1e-2)
    model.classifier.weight.data = torch.tensor(w_D[None], dtype=torch.float32)
    model.classifier.bias.data = torch.tensor([bias], dtype=torch.float32)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def local_models(tmp_path_factory) -> list[Path]:
    """Stand-ins for the preset's DCLM fastText, Nemotron-4-annotated and Mixtral-annotated edu classifiers,
    trained on the machine's documentation (hq, score 5) against licences and changelogs (cc, score 0)."""
    root = tmp_path_factory.mktemp("nemotron-cc-models")
    train = split(build_training_set(TrainingSetConfig(max_docs_per_source=40, max_chars=4000)), TRAIN)
    texts, labels, scores = train["text"].to_pylist(), train["label"].to_pylist(), np.asarray(train["score"])
    return [train_fasttext(texts, labels, root / "dclm_fasttext.bin", FastTextTrainConfig(dim=32, bucket=100_000)),
            train_embedding_classifier(texts, scores, root / "nemotron-edu-classifier",
                                       EmbeddingTrainConfig(max_length=MAX_LENGTH)),
            fineweb_edu_format(texts, scores, root / "mixtral-edu-classifier")]


@pytest.fixture(scope="module")
def run(sample_crawl: Path, local_models: list[Path], tmp_path_factory) -> Path:
    """The preset over the sample crawl, the model paths and the rephrase server replaced, rejects kept."""
    workdir = tmp_path_factory.mktemp("nemotron-cc") / "work"
    preset = load_curate_config(PRESET)
    classifiers = [{"name": spec.name, "path": str(path), "max_length": MAX_LENGTH}
                   for spec, path in zip(preset.classify.classifiers, local_models, strict=True)]
    with StubServer() as server, LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                              dashboard_address=None) as cluster:
        config = load_curate_config(
            PRESET, inputs=[{"path": str(sample_crawl)}], workdir=str(workdir), keep_rejects=True,
            dask={"scheduler": cluster.scheduler_address}, classify={"classifiers": classifiers},
            rephrase={"http": {"endpoint": server.url, "model": "stub"}, "max_docs": 6})
        assert config.stages == ["extract", "langid", "exact-dedup", "fuzzy-dedup", "substring-dedup", "classify",
                                 "heuristics", "rephrase"]
        assert config.heuristics.apply_to_quality_levels == ("medium-high", "medium", "medium-low", "low")
        curate(config)
    return workdir


def _table(directory: Path) -> pa.Table:
    return pq.read_table(sorted(directory.glob("part-*.parquet")))


@pytest.mark.slow
def test_the_funnel_accounts_for_every_document(run: Path) -> None:
    stages = json.loads((run / "stats.json").read_text())["stages"]
    assert [s["name"] for s in stages] == ["extract", "langid", "exact-dedup", "fuzzy-dedup", "substring-dedup",
                                           "classify", "heuristics", "rephrase"]
    filtering = stages[:-1]
    for stage in filtering:
        assert stage["docs_in"] == stage["docs_out"] + sum(stage["dropped"].values()), stage["name"]
    for before, after in zip(filtering, filtering[1:]):
        assert after["docs_in"] == before["docs_out"], after["name"]
    assert filtering[0]["docs_in"] == filtering[-1]["docs_out"] + sum(sum(s["dropped"].values()) for s in filtering)
    assert set(stages[1]["dropped"]) <= {"language_not_kept", "language_score_low"} and stages[1]["dropped"]
    assert set(_table(run / "langid")["language"].to_pylist()) == {"en"}  # English only
    assert stages[2]["dropped"]["exact_duplicate"] > 0 and stages[5]["dropped"] == {}
    assert _table(run / "curated").num_rows == filtering[-1]["docs_out"] > 0


@pytest.mark.slow
def test_heuristics_judge_only_the_documents_below_high(run: Path) -> None:
    classified, curated = _table(run / "classify"), _table(run / "curated")
    rejected = pq.read_table(run / "heuristics" / "rejected", columns=["id", "drop_reason"])  # the quarantine schema
    level = dict(zip(classified["id"].to_pylist(), classified["quality_level"].to_pylist()))
    high = classified.filter(pc.equal(classified["quality_level"], "high"))
    assert high.num_rows > 0 and rejected.num_rows > 0
    assert {level[i] for i in rejected["id"].to_pylist()} <= set(BELOW_HIGH_LEVELS)
    # every high document is in the output as classify left it: not dropped, not even rewritten by C4's line rules
    kept = dict(zip(curated["id"].to_pylist(), curated["text"].to_pylist()))
    assert all(kept.get(i) == text for i, text in zip(high["id"].to_pylist(), high["text"].to_pylist()))
    # ... which the rules would have done, had they judged them
    config = load_curate_config(PRESET, heuristics={"apply_to_quality_levels": "all"}).heuristics
    judged = HeuristicFilter(config).run(high)
    unjudged = high.filter(pc.is_in(high["id"], judged.kept["id"]))
    assert judged.rejected.num_rows > 0 or judged.kept["text"].to_pylist() != unjudged["text"].to_pylist()
    # below high, the preset's own config judged them: the same reasons, document for document
    below = classified.filter(pc.invert(pc.equal(classified["quality_level"], "high")))
    again = HeuristicFilter(dataclasses.replace(config, apply_to_quality_levels=BELOW_HIGH_LEVELS)).run(below)
    assert sorted(zip(again.rejected["id"].to_pylist(), again.rejected["drop_reason"].to_pylist())) == sorted(
        zip(rejected["id"].to_pylist(), rejected["drop_reason"].to_pylist()))


@pytest.mark.slow
def test_the_output_has_five_levels_and_synthetic_tasks_follow_them(run: Path) -> None:
    curated = _table(run / "curated")
    assert set(curated["quality_level"].to_pylist()) == set(LEVELS)
    for name in ("dclm", "edu_nemotron", "edu_mixtral"):
        assert pc.max(curated[f"bucket_{name}"]).as_py() <= 19 and f"score_{name}" in curated.column_names
    synthetic = _table(run / "rephrase")
    assert synthetic.num_rows > 0
    for kind, bucket in zip(synthetic["synthetic_kind"].to_pylist(), synthetic["quality_bucket"].to_pylist()):
        assert (kind == "wiki" and bucket <= 11) or (kind != "wiki" and bucket >= 18), (kind, bucket)
