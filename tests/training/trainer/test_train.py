"""Single-process training on real token shards: loss goes down, metrics and checkpoints are
written, resume is exact, a failed save keeps the previous checkpoint, non-finite steps are
skipped and then abort, and an exported checkpoint loads in transformers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from token_fixtures import HANDBOOK_EN, documents
from transformers import AutoModelForCausalLM, AutoTokenizer

import training.trainer.checkpoint as checkpoint_module
from training.model import load_hf
from training.trainer.checkpoint import finished_checkpoint, read_checkpoint_meta
from training.trainer.config import TrainConfigError, load_train_config
from training.trainer.distributed import close_distributed
from training.trainer.export import export_hf
from training.trainer.loop import NonFiniteLossError, Trainer, train


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory, token_dir: Path) -> Path:
    """16 steps of the tiny preset, checkpoints every 4 (the last 2 kept)."""
    root = tmp_path_factory.mktemp("trained")
    mixture = root / "mixture.yaml"
    mixture.write_text(f"seq_len: 64\nseed: 5\ncomponents:\n  all:\n    paths: {token_dir}/*.parquet\n    weight: 1.0\n")
    cfg = load_train_config(None, {"model.overrides": {"vocab_size": 2048}, "data.mixture": str(mixture),
                                   "batch.global_batch_tokens": 1024, "batch.micro_batch_size": 8,
                                   "schedule.warmup_steps": 3, "max_steps": 16, "checkpoint.every_steps": 4,
                                   "checkpoint.keep_last": 2, "logging.progress_bar": False, "out": str(root / "run")})
    result = train(cfg)
    assert result.steps == 16 and result.tokens == 16 * 1024 and result.skipped_steps == 0
    return root / "run"


def test_loss_decreases_and_metrics_are_written(trained_run: Path) -> None:
    records = _records(trained_run)
    assert [r["step"] for r in records] == list(range(1, 17))
    losses = [r["loss"] for r in records]
    assert losses[0] == pytest.approx(7.6, abs=0.3)  # ln(2048): a fresh model is uniform
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 1.0
    for key in ("lr", "grad_norm", "tokens_per_s", "mfu", "expert_load_cv", "expert_load_max", "skipped_steps"):
        assert all(key in r for r in records), key
    assert records[-1]["tokens"] == 16 * 1024 and records[-1]["skipped_steps"] == 0
    assert list((trained_run / "tensorboard").glob("events.out.tfevents.*"))
    assert (trained_run / "config.yaml").is_file()
    kept = sorted(p.name for p in (trained_run / "checkpoints").iterdir())
    assert kept == ["step-00000012", "step-00000016"]  # keep_last 2


def test_a_finished_run_is_known_by_its_last_checkpoint(trained_run: Path) -> None:
    """What lets `pretrain` (and so a rerun of an ablation or a pipeline) skip starting a trainer."""
    config = load_train_config(trained_run / "config.yaml").model_dump(mode="json")
    checkpoints = trained_run / "checkpoints"
    assert finished_checkpoint(checkpoints, config) == checkpoints / "step-00000016"
    assert finished_checkpoint(checkpoints, config | {"max_steps": 20}) is None  # more to train
    assert finished_checkpoint(checkpoints, config | {"seed": config["seed"] + 1}) is None  # another run
    assert finished_checkpoint(trained_run / "no-checkpoints", config) is None


def test_resume_gives_the_same_losses(train_config, tmp_path: Path) -> None:
    straight = load_train_config(train_config(), {"out": str(tmp_path / "straight")})
    train(straight)
    staged = load_train_config(train_config(), {"out": str(tmp_path / "staged")})
    assert train(staged, max_steps=4).steps == 4
    assert train(staged, resume=True).steps == 8
    assert [r["loss"] for r in _records(tmp_path / "staged")] == [r["loss"] for r in _records(tmp_path / "straight")]


@pytest.mark.slow
def test_long_context_phase_resumes_exactly_one_step_before_and_after_it(long_context_config, tmp_path: Path) -> None:
    """Steps 1-4 train on 2 x 4 windows of 64 tokens, steps 5-6 on 1 x 2 windows of 256. A run
    stopped at step 3 and again at step 5 gives the uninterrupted run's loss at every step."""
    overrides = {"max_steps": 6, "checkpoint.every_steps": 100, "checkpoint.keep_last": 3,
                 "logging.tensorboard": False, "logging.peak_tflops": 1.0}
    train(load_train_config(long_context_config(), overrides | {"out": str(tmp_path / "straight")}))
    staged = load_train_config(long_context_config(), overrides | {"out": str(tmp_path / "staged")})
    assert train(staged, max_steps=3).steps == 3
    assert train(staged, resume=True, max_steps=5).steps == 5
    assert train(staged, resume=True).steps == 6
    records = _records(tmp_path / "straight")
    assert [(r["phase"], r["seq_len"], r["tokens"]) for r in records] == [
        (0, 64, 512), (0, 64, 1024), (0, 64, 1536), (0, 64, 2048), (1, 256, 2560), (1, 256, 3072)]
    assert [r["loss"] for r in _records(tmp_path / "staged")] == [r["loss"] for r in records]
    saved = {path.name: read_checkpoint_meta(path)["phase"] for path in (tmp_path / "staged/checkpoints").iterdir()}
    assert saved == {"step-00000003": "short", "step-00000005": "long", "step-00000006": "long"}


def test_crash_while_saving_keeps_the_previous_checkpoint(train_config, tmp_path: Path, monkeypatch) -> None:
    cfg = load_train_config(train_config(), {"out": str(tmp_path / "run")})
    train(cfg, max_steps=4)
    real_save = checkpoint_module.dcp.save

    def save_then_crash(state, checkpoint_id):
        real_save(state, checkpoint_id=checkpoint_id)  # the shards are on disk, the rename never happens
        raise OSError("disk full (injected)")

    monkeypatch.setattr(checkpoint_module.dcp, "save", save_then_crash)
    with pytest.raises(OSError, match="injected"):
        train(cfg, resume=True)
    monkeypatch.undo()
    assert (tmp_path / "run/checkpoints/step-00000008.tmp").is_dir()
    trainer = Trainer(cfg, resume=True)
    try:
        assert trainer.resumed_from.name == "step-00000004" and trainer.state["step"] == 4
    finally:
        close_distributed()


def test_non_finite_steps_are_skipped_then_abort(train_config) -> None:
    cfg = load_train_config(train_config(max_skipped_steps=2))
    trainer = Trainer(cfg)
    try:
        batches = iter(trainer.loader)
        step = lambda: trainer.train_step([next(batches) for _ in range(trainer.grad_accum)])  # noqa: E731
        step()
        weight = trainer.model.backbone.layers[0].mixer.in_proj.weight
        saved = weight.detach().clone()
        with torch.no_grad():
            weight.fill_(float("inf"))
        record = step()
        assert record["skipped_steps"] == 1 and trainer.state["skipped_in_row"] == 1
        with torch.no_grad():
            weight.copy_(saved)
        record = step()  # a finite step resets the run of skips
        assert record["skipped_steps"] == 1 and trainer.state["skipped_in_row"] == 0
        with torch.no_grad():
            weight.fill_(float("nan"))
        step(), step()
        with pytest.raises(NonFiniteLossError, match="3 steps in a row had a non-finite loss or gradient"):
            step()
    finally:
        close_distributed()


def test_vocabulary_mismatch_is_refused(train_config) -> None:
    cfg = load_train_config(train_config(model={"preset": "tiny", "overrides": {}}))
    with pytest.raises(TrainConfigError, match="tokenizer has 2048 tokens but the model's vocab_size is 1024"):
        Trainer(cfg)
    close_distributed()


def test_export_loads_in_transformers(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "hf"
    assert export_hf(trained_run, out, dtype=torch.float32).name == "step-00000016"
    tokenizer = AutoTokenizer.from_pretrained(out)
    hf_model = AutoModelForCausalLM.from_pretrained(out).eval()
    ours = load_hf(out).eval()
    text = documents(f"{HANDBOOK_EN}/*.html", limit=3)[-1]
    ids = torch.tensor([tokenizer(text)["input_ids"][:256]])
    with torch.no_grad():
        hf_logits, our_logits = hf_model(ids).logits, ours(ids).logits
    assert torch.allclose(hf_logits, our_logits, atol=1e-4)
    loss = torch.nn.functional.cross_entropy(hf_logits[0, :-1], ids[0, 1:]).item()
    assert loss < 7.0  # trained: well below a fresh model's ln(2048) = 7.62


def test_activation_checkpointing_changes_nothing_but_memory(train_config, tmp_path: Path) -> None:
    plain = load_train_config(train_config(), {"out": str(tmp_path / "plain"), "max_steps": 3})
    checkpointed = load_train_config(train_config(), {"out": str(tmp_path / "ac"), "max_steps": 3,
                                                      "parallel.activation_checkpointing": True})
    train(plain), train(checkpointed)
    assert [r["loss"] for r in _records(tmp_path / "ac")] == [r["loss"] for r in _records(tmp_path / "plain")]


@pytest.mark.slow
def test_compiled_blocks_train_like_eager_ones(train_config, tmp_path: Path) -> None:
    eager = load_train_config(train_config(), {"out": str(tmp_path / "eager"), "max_steps": 2})
    compiled = load_train_config(train_config(), {"out": str(tmp_path / "compiled"), "max_steps": 2,
                                                  "parallel.compile": True})
    train(eager), train(compiled)
    assert [r["loss"] for r in _records(tmp_path / "compiled")] == pytest.approx(
        [r["loss"] for r in _records(tmp_path / "eager")], rel=1e-3)


def test_resume_after_a_crash_logs_every_step_once(train_config, tmp_path: Path) -> None:
    cfg = load_train_config(train_config(), {"out": str(tmp_path / "run"), "checkpoint.every_steps": 4})
    train(cfg, max_steps=6)  # steps 5 and 6 are logged, then the run ends before a checkpoint covers them
    (tmp_path / "run/checkpoints/step-00000006").rename(tmp_path / "run/checkpoints/step-00000006.tmp")
    with (tmp_path / "run/metrics.jsonl").open("a") as metrics:
        metrics.write('{"step": 7, "lo')  # and the crash cut a line in half
    train(cfg, resume=True)
    assert [r["step"] for r in _records(tmp_path / "run")] == list(range(1, 9))
