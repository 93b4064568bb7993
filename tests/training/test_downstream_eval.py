"""`ccforge eval` on a trained, exported tiny model: a text set of held-out handbook pages gives the
bits per byte the model computes directly, a local multiple-choice task gives the accuracy the model's
own log-likelihoods give, and bad input fails in one line."""

from __future__ import annotations

import contextlib
import glob
import io
import json
import math
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from token_fixtures import HANDBOOK_EN, chunks, html_text
from transformers import AutoTokenizer

from flows.cli.main import main
from training.model import HybridForCausalLM, get_preset, load_hf, save_hf
from training.trainer.config import load_train_config
from training.trainer.export import export_hf
from training.trainer.loop import train

MC_TASK = "heldout_next_passage"


def _held_out_documents(first_page: int, count: int) -> list[str]:
    """Handbook documents from pages the token shards leave out (they take the first 60, token_fixtures)."""
    pages = sorted(glob.glob(f"{HANDBOOK_EN}/*.html"))[first_page:first_page + 20]
    docs = [c for p in pages for c in chunks(html_text(p), 1500) if len(c.split()) > 60]
    assert len(docs) >= count
    return docs[:count]


def _choice_items(docs: list[str]) -> list[dict]:
    """A passage's opening words, its true next 12 words among 3 other passages' (label rotates 0..3)."""
    openings = [" ".join(d.split()[:40]) for d in docs]
    nexts = [" ".join(d.split()[40:52]) for d in docs]
    items = []
    for i, opening in enumerate(openings):
        others = [nexts[(i + k) % len(docs)] for k in (1, 2, 3)]
        label = i % 4
        items.append({"context": opening, "choices": others[:label] + [nexts[i]] + others[label:], "label": label})
    return items


@pytest.fixture(scope="module")
def exported_model(tmp_path_factory: pytest.TempPathFactory, token_dir: Path) -> Path:
    """8 steps of the tiny preset on the session's token shards, exported in float32 with its tokenizer."""
    root = tmp_path_factory.mktemp("downstream")
    mixture = root / "mixture.yaml"
    mixture.write_text(f"seq_len: 64\nseed: 5\ncomponents:\n  all:\n    paths: {token_dir}/*.parquet\n    weight: 1.0\n")
    cfg = load_train_config(None, {"model.overrides": {"vocab_size": 2048}, "data.mixture": str(mixture),
                                   "batch.global_batch_tokens": 1024, "batch.micro_batch_size": 8,
                                   "schedule.warmup_steps": 2, "max_steps": 8, "checkpoint.every_steps": 8,
                                   "logging.progress_bar": False, "out": str(root / "run")})
    train(cfg)
    export_hf(root / "run", root / "hf", dtype=torch.float32)
    return root / "hf"


@pytest.fixture(scope="module")
def untrained_model(tmp_path_factory: pytest.TempPathFactory, token_dir: Path) -> Path:
    """The tiny preset at its initialisation, with the session's tokenizer: enough for the error paths."""
    out = tmp_path_factory.mktemp("untrained") / "hf"
    torch.manual_seed(0)
    save_hf(HybridForCausalLM(get_preset("tiny", vocab_size=2048)), out)
    for file in (token_dir.parent / "tokenizer").iterdir():
        shutil.copy2(file, out / file.name)
    return out


@pytest.fixture(scope="module")
def eval_run(exported_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One `ccforge eval` with a Parquet text set (12 documents) and a JSONL multiple-choice task (10 items)."""
    root = tmp_path_factory.mktemp("eval")
    texts = _held_out_documents(60, 12)
    pq.write_table(pa.table({"id": [f"held-{i}" for i in range(len(texts))], "text": texts}), root / "heldout.parquet")
    items = _choice_items(_held_out_documents(80, 10))
    (root / "items.jsonl").write_text("".join(json.dumps(item) + "\n" for item in items))
    (root / "tasks").mkdir()
    (root / "tasks" / f"{MC_TASK}.yaml").write_text(yaml.safe_dump({
        "task": MC_TASK, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(root / "items.jsonl")}},
        "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "context", "doc_to_choice": "choices",
        "doc_to_target": "label", "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]}))
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["eval", str(exported_model), "--text-set", f"heldout={root / 'heldout.parquet'}",
                     "--include-path", str(root / "tasks"), "--tasks", MC_TASK, "--batch-size", "4",
                     "--output", str(root / "results.json")])
    assert code == 0
    return {"texts": texts, "items": items, "stdout": stdout.getvalue(),
            "results": json.loads((root / "results.json").read_text())}


@pytest.mark.slow  # training the model: ~10 s on 2 quiet cores, over a minute when they are shared
def test_text_set_bits_per_byte_equal_the_models_own(eval_run: dict, exported_model: Path) -> None:
    model, tokenizer = load_hf(exported_model).eval(), AutoTokenizer.from_pretrained(exported_model)
    nll, tokens = 0.0, 0
    for text in eval_run["texts"]:  # each document after the EOS that separates documents in training
        ids = torch.tensor([[tokenizer.eos_token_id, *tokenizer(text)["input_ids"]]])
        with torch.no_grad():
            logits = model(ids).logits[0, :-1]
        nll += torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum").item()
        tokens += ids.shape[1] - 1
    num_bytes = sum(len(t.encode("utf-8")) for t in eval_run["texts"])
    expected = nll / math.log(2) / num_bytes
    results = eval_run["results"]
    assert results["n-samples"]["heldout"]["effective"] == 12
    assert results["results"]["heldout"]["bits_per_byte,none"] == pytest.approx(expected, abs=1e-4)
    assert results["results"]["heldout"]["byte_perplexity,none"] == pytest.approx(2 ** expected, rel=1e-4)
    assert expected < 0.95 * math.log2(2048) * tokens / num_bytes  # trained: below a uniform model's bits per byte
    assert "heldout" in eval_run["stdout"] and "bits_per_byte" in eval_run["stdout"]


@pytest.mark.slow
def test_multiple_choice_accuracy_equals_the_models_own(eval_run: dict, exported_model: Path) -> None:
    model, tokenizer = load_hf(exported_model).eval(), AutoTokenizer.from_pretrained(exported_model)
    correct = 0
    for item in eval_run["items"]:
        context_ids = tokenizer(item["context"])["input_ids"]
        scores = []
        for choice in item["choices"]:  # lm-eval's split: the choice's tokens are the whole's after the context's
            ids = torch.tensor([tokenizer(f"{item['context']} {choice}")["input_ids"]])
            with torch.no_grad():
                logp = torch.log_softmax(model(ids[:, :-1]).logits[0], dim=-1)
            positions = range(len(context_ids) - 1, ids.shape[1] - 1)
            scores.append(sum(logp[p, ids[0, p + 1]].item() for p in positions))
        correct += max(range(len(scores)), key=scores.__getitem__) == item["label"]
    results = eval_run["results"]
    assert results["n-samples"][MC_TASK]["effective"] == 10
    assert 0.0 <= results["results"][MC_TASK]["acc,none"] <= 1.0
    assert results["results"][MC_TASK]["acc,none"] == pytest.approx(correct / 10)
    assert MC_TASK in eval_run["stdout"]


def _eval_error(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    assert main(["eval", *argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1]


def test_missing_model_dir_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    error = _eval_error([str(tmp_path / "absent"), "--tasks", "arc_easy"], capsys)
    assert error == f"ccforge eval: error: {tmp_path / 'absent'}: not an exported model (no config.json); " \
                    "make one with ccforge export-hf"


def test_text_set_without_text_column_is_one_line(untrained_model: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "docs.jsonl").write_text('{"body": "a document"}\n')
    error = _eval_error([str(untrained_model), "--text-set", f"docs={tmp_path / 'docs.jsonl'}"], capsys)
    assert error == f"ccforge eval: error: text set docs: {tmp_path / 'docs.jsonl'} has no 'text' column"


def test_unknown_task_is_one_line(untrained_model: Path, capsys: pytest.CaptureFixture) -> None:
    error = _eval_error([str(untrained_model), "--tasks", "no_such_task"], capsys)
    assert error == ("ccforge eval: error: unknown task 'no_such_task': not among lm-eval's tasks, groups and tags "
                     "or the --include-path directories")


def test_task_that_needs_the_network_is_one_line(untrained_model: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "hub_task.yaml").write_text(yaml.safe_dump({
        "task": "hub_task", "dataset_path": "EleutherAI/wikitext_document_level", "dataset_name": "wikitext-2-raw-v1",
        "test_split": "test", "output_type": "loglikelihood_rolling", "doc_to_text": "", "doc_to_target": "page"}))
    error = _eval_error([str(untrained_model), "--include-path", str(tmp_path), "--tasks", "hub_task"], capsys)
    assert error.startswith("ccforge eval: error: Couldn't reach 'EleutherAI/wikitext_document_level' on the Hub")
    assert error.endswith("a task needs the network, and ccforge eval runs offline; use tasks whose data files are "
                          "local (--text-set, or --include-path YAMLs with dataset_path: json and data_files)")
