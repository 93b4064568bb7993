"""Batch shapes per mixture phase: each phase's grad accumulation follows from its seq_len and
micro_batch_size so every step stays global_batch_tokens, a change of shape must fall between
optimizer steps (and whole rounds of DataLoader workers), and examples/long-context.yaml does."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.data import load_mixture, plan_mixture
from training.trainer.config import BatchSchedule, TrainConfigError, batch_schedule, load_train_config

REPO = Path(__file__).parents[3]


def _schedule(config: Path, overrides: dict | None = None, *, world_size: int = 1) -> BatchSchedule:
    cfg = load_train_config(config, overrides)
    plan = plan_mixture(load_mixture(cfg.data.mixture), cfg.max_steps * cfg.batch.global_batch_tokens)
    return batch_schedule(cfg, plan, world_size=world_size)


def test_grad_accum_follows_each_phase(long_context_config) -> None:
    schedule = _schedule(long_context_config())
    assert [(p.name, p.end, p.seq_len, p.micro_batch_size, p.grad_accum) for p in schedule.phases] == [
        ("short", 2048, 64, 4, 2), ("long", 4096, 256, 2, 1)]
    assert [schedule.at_step(step).name for step in (0, 3, 4, 7, 100)] == ["short", "short", "long", "long", "long"]
    assert [p.grad_accum for p in _schedule(long_context_config(), {"batch.global_batch_tokens": 2048}).phases] == [8, 4]


@pytest.mark.parametrize(("overrides", "world_size", "message"), [
    ({"batch.global_batch_tokens": 1536}, 1,
     "mixture phase 'long' changes seq_len x micro_batch_size from 64 x 4 to 256 x 2 at token 2,048, which is not "
     "between optimizer steps: make the tokens from 0 to there a multiple of 1,536 (batch.global_batch_tokens)"),
    ({"data.num_workers": 3}, 1,  # grad_accum 2 and 3 workers: every 3 steps all workers have given 2 batches
     "make the tokens from 0 to there a multiple of 1,536 (batch.global_batch_tokens x 3, for 3 DataLoader workers)"),
    ({}, 2, "batch.global_batch_tokens 512 is not a multiple of seq_len 256 x micro_batch_size 2 x world size 2 = "
            "1024 (mixture phase 'long')"),
])
def test_shapes_that_do_not_step_whole_are_one_line_errors(long_context_config, overrides: dict, world_size: int,
                                                           message: str) -> None:
    with pytest.raises(TrainConfigError) as err:
        _schedule(long_context_config(), overrides, world_size=world_size)
    assert message in str(err.value) and "\n" not in str(err.value)
    _schedule(long_context_config(), {"data.num_workers": 2})  # 2 workers share grad_accum 2 evenly


def test_long_context_example_switches_between_steps(token_dir: Path, tmp_path: Path) -> None:
    """The example pair on the test shards (for the demo's): 48 steps of 4 x 8 x 128 tokens, then
    4 x 2 x 512, on one process; on two, 2 micro-batches a step in both phases."""
    example = REPO / "examples/long-context-mixture.yaml"
    shards = {f"components.{name}.paths": [str(token_dir / "*.parquet")] for name in load_mixture(example).components}
    mixture = tmp_path / "mixture.yaml"
    mixture.write_text(load_mixture(example, shards).model_dump_json())
    config = REPO / "examples/long-context.yaml"
    for world_size, grad_accum in ((1, 4), (2, 2)):
        schedule = _schedule(config, {"data.mixture": str(mixture)}, world_size=world_size)
        assert [(p.name, p.seq_len, p.micro_batch_size, p.grad_accum) for p in schedule.phases] == [
            ("stable", 128, 8, grad_accum), ("long-context", 512, 2, grad_accum)]
        assert [schedule.at_step(step).name for step in (47, 48, 59)] == ["stable", "long-context", "long-context"]
