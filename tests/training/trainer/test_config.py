"""Train configs: defaults, one-line errors, batch arithmetic, schedules, decay exclusions."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.model import HybridForCausalLM, get_preset
from training.trainer.config import ScheduleSection, TrainConfigError, grad_accum_steps, load_train_config
from training.trainer.optim import decays, lr_multiplier


def test_defaults_and_overrides(train_config) -> None:
    cfg = load_train_config(train_config(), {"precision.recipe": "fp8", "max_steps": 20})
    assert cfg.precision.recipe == "fp8" and cfg.max_steps == 20
    assert cfg.optimizer.lr == 3e-3 and cfg.schedule.kind == "wsd" and cfg.parallel.param_dtype == "bf16"
    assert cfg.model.hybrid_config().vocab_size == 2048
    assert grad_accum_steps(cfg, seq_len=64, world_size=1) == 2
    assert grad_accum_steps(cfg, seq_len=64, world_size=2) == 1


@pytest.mark.parametrize(("sections", "message"), [
    ({"batch": {"micro_batch_size": 0}}, "batch.micro_batch_size: Input should be greater than 0"),
    ({"optimizer": {"lrr": 1.0}}, "optimizer.lrr: Extra inputs are not permitted"),
    ({"schedule": {"kind": "linear"}}, "schedule.kind: Input should be 'wsd', 'cosine' or 'constant'"),
    ({"model": {"preset": "huge"}}, "unknown preset 'huge'"),
    ({"model": {"overrides": {"hidden_sise": 64}}}, "hidden_sise"),
    ({"precision": {"recipe": "fp4"}}, "precision.recipe"),
])
def test_bad_fields_are_one_line_errors(train_config, sections: dict, message: str) -> None:
    path = train_config(**sections)
    with pytest.raises(TrainConfigError) as err:
        load_train_config(path)
    assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_file_and_indivisible_batch(train_config, tmp_path: Path) -> None:
    with pytest.raises(TrainConfigError, match="no such config file"):
        load_train_config(tmp_path / "nope.yaml")
    cfg = load_train_config(train_config(batch={"global_batch_tokens": 500}))
    with pytest.raises(TrainConfigError, match="500 is not a multiple of seq_len 64 x micro_batch_size 4"):
        grad_accum_steps(cfg, seq_len=64, world_size=1)


def test_wsd_and_cosine_schedules() -> None:
    wsd = lr_multiplier(ScheduleSection(kind="wsd", warmup_steps=10, decay_fraction=0.2), max_steps=100, min_ratio=0.1)
    assert [wsd(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert wsd(10) == wsd(79) == 1.0  # stable until the last 20 %
    assert wsd(80) < 1.0 and wsd(99) == pytest.approx(0.1)
    assert all(wsd(s) >= wsd(s + 1) for s in range(80, 99))
    cosine = lr_multiplier(ScheduleSection(kind="cosine", warmup_steps=0), max_steps=100, min_ratio=0.0)
    assert cosine(49) == pytest.approx(0.5) and cosine(99) == pytest.approx(0.0, abs=1e-12)


def test_weight_decay_exclusions() -> None:
    model = HybridForCausalLM(get_preset("tiny"))
    no_decay = {name.split(".")[-1] for name, p in model.named_parameters() if not decays(name, p)}
    decayed = {name.split(".")[-2] + "." + name.split(".")[-1] for name, p in model.named_parameters() if decays(name, p)}
    assert {"A_log", "D", "dt_bias"} <= no_decay and "weight" in no_decay  # norm weights, conv bias
    assert "bias" in no_decay
    assert {"in_proj.weight", "q_proj.weight", "embeddings.weight", "lm_head.weight", "experts.up_proj"} <= decayed


def test_example_shows_every_default() -> None:
    example = load_train_config("examples/train.yaml")
    defaults = load_train_config(None, {"data.mixture": example.data.mixture, "model.overrides": example.model.overrides})
    assert example.model_dump() == defaults.model_dump()
