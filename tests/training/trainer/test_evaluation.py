"""Held-out evaluation: the `eval:` section, documents held out of the training stream, windows
and bits per byte against a hand computation, eval lines in metrics.jsonl and after a resume,
and the same numbers on one rank and on two (gloo)."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from flows.pretrain import training_summary
from flows.report.sections import Chart, Table, training_section
from flows.report.summary import RunSummary
from training.data import ConsumerStream, build_loader, load_mixture, plan_mixture
from training.data.heldout import Holdout
from training.model import HybridForCausalLM, get_preset
from training.trainer.config import EvalSection, TrainConfig, TrainConfigError, load_train_config
from training.trainer.distributed import DistInfo, close_distributed, init_distributed
from training.trainer.evaluation import EvalSet, Evaluator, build_eval_sets, build_evaluator, pack_windows
from training.trainer.loop import train

HOLDOUT = 0.25


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _shards(token_dir: Path) -> list[str]:
    return sorted(map(str, token_dir.glob("*.parquet")))


def _without_timings(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("tokens_per_s", "step_seconds", "mfu", "eval_seconds")}
            for r in records]


def _hash_unit(doc_id: str) -> float:
    """The rule of training.data.heldout, written out again: blake2b-64 of the id over 2**64."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=8).digest(), "little") / 2**64


def _held_out_by_hash(doc_id: str, fraction: float) -> bool:
    return _hash_unit(doc_id) < fraction


def test_eval_section_defaults_and_one_line_errors(train_config) -> None:
    assert not load_train_config(train_config()).eval.enabled  # no sets: off
    cfg = load_train_config(train_config(eval={"holdout": 0.1, "sets": {"docs": "/some/shards/*.parquet"}}))
    assert cfg.eval.enabled and cfg.eval.sets == {"docs": ["/some/shards/*.parquet"]}
    assert (cfg.eval.every_steps, cfg.eval.windows, cfg.eval.batch_size) == (100, 32, 4)
    for bad, field in (({"holdout": 1.0}, "eval.holdout"), ({"holdout": 0}, "eval.holdout"),
                       ({"every_steps": 0}, "eval.every_steps"), ({"windows": -1}, "eval.windows"),
                       ({"sets": {"docs": []}}, "eval"), ({"window": 8}, "eval.window")):
        with pytest.raises(TrainConfigError) as err:
            load_train_config(train_config(eval=bad))
        assert field in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_token_shards_record_the_utf8_bytes_of_every_document(token_dir: Path) -> None:
    curated = pq.read_table(token_dir.parent / "curated", columns=["id", "text"])
    tokens = pq.read_table(_shards(token_dir), columns=["id", "n_bytes"])
    expected = dict(zip(curated["id"].to_pylist(), (len(t.encode()) for t in curated["text"].to_pylist())))
    assert tokens.num_rows == len(expected) > 200
    assert dict(zip(tokens["id"].to_pylist(), tokens["n_bytes"].to_pylist())) == expected
    assert any(n != len(t) for n, t in zip(expected.values(), curated["text"].to_pylist()))  # non-ASCII text


def test_held_out_documents_never_reach_the_training_stream(mixture_file, token_dir: Path) -> None:
    """One epoch of the training stream reads every document but the held-out ones, by the
    hash rule; the eval set of the component holds exactly the held-out ones."""
    path = mixture_file("seq_len: 64\nseed: 3\ncomponents:\n  all:\n    paths: {shards}\n    weight: 1.0\n")
    plan = plan_mixture(load_mixture(path), 10**6)
    trainer_plan = build_loader(path, batch_size=4, tokens=10**6, holdout=HOLDOUT).dataset.plan  # what Trainer reads
    assert trainer_plan == plan.with_holdout(Holdout(HOLDOUT, held_out=False))
    all_ids = pq.read_table(_shards(token_dir), columns=["id"])["id"].to_pylist()
    held_out = {doc_id for doc_id in all_ids if _held_out_by_hash(doc_id, HOLDOUT)}
    assert 0.15 < len(held_out) / len(all_ids) < 0.35

    training = plan.with_holdout(Holdout(HOLDOUT, held_out=False))
    component = training.components[0]
    stream, trained = ConsumerStream(training, consumer=0, num_consumers=1), []
    while (window := stream.next_window()) is not None:
        first_epoch = [ref for ref in window.docs if ref.epoch == 0]
        for ref in first_epoch:  # the id of the ref.row-th selected row of its row group
            table = pq.ParquetFile(component.shards[ref.shard].path).read_row_group(ref.row_group)
            trained.append(table["id"][int(np.flatnonzero(component.row_filter.mask(table))[ref.row])].as_py())
        if len(first_epoch) < len(window.docs):
            break
    assert len(trained) == len(set(trained)) == len(all_ids) - len(held_out)
    assert set(trained) == set(all_ids) - held_out

    cfg = load_train_config(None, {"data.mixture": "unused.yaml", "eval.holdout": HOLDOUT, "eval.windows": 10**4})
    (eval_set,) = build_eval_sets(cfg.eval, plan, vocab_size=2048)
    stream_tokens = np.concatenate([eval_set.tokens_WL[0], *eval_set.tokens_WL[1:, 1:]])
    docs = np.split(stream_tokens, np.flatnonzero(stream_tokens == 2) + 1)[:-1]  # whole documents (EOS id 2)
    table = pq.read_table(_shards(token_dir), columns=["id", "input_ids"])
    by_tokens = {tuple(ids): doc_id for doc_id, ids in zip(table["id"].to_pylist(), table["input_ids"].to_pylist())}
    evaluated = [by_tokens[tuple(doc)] for doc in docs]
    assert set(evaluated) <= held_out and len(evaluated) >= len(held_out) - 1  # the last one may be cut


def test_a_component_without_enough_held_out_documents_is_left_out(mixture_file, token_dir: Path, caplog) -> None:
    """A fraction that holds out exactly one document: its component's set is that document's whole
    windows (its bytes in proportion), and the other component, with none, is left out with a warning."""
    plan = plan_mixture(load_mixture(mixture_file(
        "seq_len: 64\ncomponents:\n  handbook: {paths: {shards}, sources: [handbook], weight: 0.5}\n"
        "  postgres: {paths: {shards}, sources: [postgres], weight: 0.5}\n")), 10**6)
    table = pq.read_table(_shards(token_dir), columns=["id", "source", "input_ids", "n_bytes"]).to_pylist()
    table.sort(key=lambda row: _hash_unit(row["id"]))
    first, second = table[0], table[1]
    fraction = (_hash_unit(first["id"]) + _hash_unit(second["id"])) / 2
    with caplog.at_level(logging.WARNING):
        evaluator = build_evaluator(EvalSection(holdout=fraction, windows=100), plan, vocab_size=2048,
                                    dist_info=DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu")),
                                    document_boundaries=True)
    [eval_set] = evaluator.sets
    windows = (len(first["input_ids"]) - 1) // 64
    assert eval_set.name == first["source"] and eval_set.tokens_WL.shape == (windows, 65) and windows >= 2
    assert eval_set.tokens_WL[:, :-1].ravel().tolist() == first["input_ids"][:windows * 64]
    assert eval_set.label_bytes == pytest.approx(first["n_bytes"] * windows * 64 / len(first["input_ids"]))
    other = ({"handbook", "postgres"} - {first["source"]}).pop()
    assert f"component {other!r} has too few held-out documents for one window" in caplog.text


def test_windows_doc_ids_and_bytes_by_hand() -> None:
    """Documents of 5, 3 and 6 tokens (10, 9 and 12 bytes: 2, 3 and 2 a token) in 3 windows of 4:
    labels are stream tokens 1..12, so 4 tokens of the first document, 3 of the second, 5 of the third."""
    docs = [(np.arange(10, 15, dtype=np.int32), 10), (np.arange(20, 23, dtype=np.int32), 9),
            (np.arange(30, 36, dtype=np.int32), 12)]
    tokens_WL, doc_ids_WL, label_bytes = pack_windows(iter(docs), seq_len=4, windows=3)
    assert tokens_WL.tolist() == [[10, 11, 12, 13, 14], [14, 20, 21, 22, 30], [30, 31, 32, 33, 34]]
    assert doc_ids_WL.tolist() == [[0, 0, 0, 0, 0], [0, 1, 1, 1, 2], [0, 0, 0, 0, 0]]
    assert label_bytes == 4 * 2 + 3 * 3 + 5 * 2
    assert pack_windows(iter(docs), seq_len=4, windows=10)[0].shape == (3, 5)  # no more than the documents fill
    assert pack_windows(iter(docs[:1]), seq_len=8, windows=2)[0].shape == (0, 9)  # fewer tokens than a window
    assert pack_windows(iter([(d, None) for d, _ in docs]), seq_len=4, windows=3)[2] is None


def test_loss_and_bpb_against_a_hand_computation() -> None:
    """Five windows in batches of 2 (the last one short): the evaluator's numbers are the summed
    cross-entropy of the model's own logits, window by window, over tokens and over bytes x ln 2."""
    torch.manual_seed(0)
    model = HybridForCausalLM(get_preset("tiny", vocab_size=512))
    rng = np.random.default_rng(0)
    docs = [(np.append(rng.integers(3, 512, size=int(n)), 2).astype(np.int32), int(n) * 4 + 1)
            for n in rng.integers(5, 40, size=30)]
    tokens_WL, doc_ids_WL, label_bytes = pack_windows(iter(docs), seq_len=32, windows=5)
    eval_set = EvalSet(name="hand", tokens_WL=tokens_WL, doc_ids_WL=doc_ids_WL, label_bytes=label_bytes)
    info = init_distributed()
    try:
        metrics = Evaluator([eval_set], batch_size=2, dist_info=info, document_boundaries=True).evaluate(model)
    finally:
        close_distributed()
    assert model.training  # back to training mode
    model.eval()
    nll = 0.0
    with torch.no_grad():
        for tokens, doc_ids in zip(torch.from_numpy(tokens_WL).long(), torch.from_numpy(doc_ids_WL)):
            logits = model(tokens[None, :-1], doc_ids_BT=doc_ids[None, :-1]).logits[0].double()
            nll += F.cross_entropy(logits, tokens[1:], reduction="sum").item()
    assert metrics["eval/hand/loss"] == pytest.approx(nll / (5 * 32), rel=1e-5)
    assert metrics["eval/hand/bpb"] == pytest.approx(nll / (math.log(2) * label_bytes), rel=1e-5)
    assert metrics["eval/hand/loss"] == pytest.approx(math.log(512), rel=0.05)  # a fresh model is near uniform


EVAL_SECTION = {"every_steps": 2, "windows": 5, "batch_size": 2}


@pytest.fixture
def evaluated(train_config, token_dir: Path, tmp_path: Path):
    """A train config evaluating the token shards as set `docs` every 2 of 5 steps, and a run directory."""
    def config(out: str) -> TrainConfig:
        section = EVAL_SECTION | {"sets": {"docs": str(token_dir / "*.parquet")}}
        return load_train_config(train_config(eval=section, max_steps=5), {"out": str(tmp_path / out)})
    return config


def test_eval_lines_in_metrics_and_training_left_alone(evaluated, train_config, tmp_path: Path) -> None:
    """eval/SET/loss and bpb at steps 2, 4 and 5 (the last); the training losses are those of a run without eval."""
    result = train(evaluated("straight"))
    records = _records(tmp_path / "straight")
    evaluations = [r for r in records if "eval/docs/loss" in r]
    assert [r["step"] for r in evaluations] == [2, 4, 5]
    assert all(r["eval/docs/bpb"] > 0 and r["eval_seconds"] > 0 for r in evaluations)
    assert evaluations[-1]["eval/docs/loss"] < evaluations[0]["eval/docs/loss"] < math.log(2048)
    assert result.final_eval == {k: v for k, v in evaluations[-1].items() if k.startswith("eval/")}
    board = EventAccumulator(str(tmp_path / "straight" / "tensorboard"))
    board.Reload()
    assert [event.step for event in board.Scalars("eval/docs/bpb")] == [2, 4, 5]
    train(load_train_config(train_config(max_steps=5), {"out": str(tmp_path / "plain")}))
    assert [r["loss"] for r in records] == [r["loss"] for r in _records(tmp_path / "plain")]

    # the training summary and the run report
    assert training_summary(tmp_path / "straight").items() >= result.final_eval.items()
    section = training_section(RunSummary(workdir=tmp_path, training=records))
    [table] = [b for b in section.blocks if isinstance(b, Table) and b.columns[0] == "set"]
    assert table.rows == [["docs", *(f"{evaluations[index][f'eval/docs/{metric}']:.4f}"
                                     for metric in ("loss", "bpb") for index in (0, -1))]]
    [chart] = [b for b in section.blocks if isinstance(b, Chart) and b.name == "evaluation"]
    assert chart.png.startswith(b"\x89PNG")


def test_a_resumed_run_logs_the_same_eval_numbers(evaluated, tmp_path: Path) -> None:
    """Stopped at step 3 (no eval there: it is not the last step) and resumed: the same records."""
    train(evaluated("straight"))
    staged = evaluated("staged")
    train(staged, max_steps=3)
    other_holdout = staged.model_copy(update={"eval": staged.eval.model_copy(update={"holdout": 0.25})})
    with pytest.raises(ValueError, match=r"step-00000003: saved with eval.holdout None, resumed with 0.25; the held-out"):
        train(other_holdout, resume=True)
    train(staged, resume=True)
    assert _without_timings(_records(tmp_path / "staged")) == _without_timings(_records(tmp_path / "straight"))


def test_a_named_set_is_checked(train_config, tmp_path: Path) -> None:
    with pytest.raises(TrainConfigError, match=r"^eval.sets.docs: component 'docs': no token shards match"):
        train(load_train_config(train_config(eval={"sets": {"docs": str(tmp_path / "none/*.parquet")}})))


EVALUATE_AT_START = """
import json, sys
from training.trainer.config import load_train_config
from training.trainer.loop import Trainer
trainer = Trainer(load_train_config(sys.argv[1]))
metrics = trainer.evaluator.evaluate(trainer.model)
if trainer.dist.is_main:
    print("EVAL " + json.dumps(metrics))
"""


@pytest.mark.slow
def test_the_same_numbers_on_one_rank_and_two(train_config, tmp_path: Path) -> None:
    """The trainer's own evaluator on its freshly initialised FSDP model (the same weights for any
    world size): 5 windows in batches of 2 are 3 batches, so rank 1 also runs a dropped one."""
    config = train_config(eval={"holdout": HOLDOUT, "windows": 5, "batch_size": 2})
    script = tmp_path / "evaluate.py"
    script.write_text(EVALUATE_AT_START)
    torchrun = str(Path(sys.executable).parent / "torchrun")
    results = []
    for nproc in (1, 2):
        done = subprocess.run([torchrun, "--standalone", f"--nproc-per-node={nproc}", str(script), str(config)],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        (line,) = [line for line in done.stdout.splitlines() if line.startswith("EVAL ")]
        results.append(json.loads(line.removeprefix("EVAL ")))
    assert sorted(results[0]) == ["eval/handbook/bpb", "eval/handbook/loss", "eval/postgres/bpb", "eval/postgres/loss"]
    assert results[1] == results[0]
