"""A train config over the session's token shards (real documents), tiny model, short schedule."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml


@pytest.fixture
def train_config(tmp_path: Path, token_dir: Path) -> Callable[..., Path]:
    """Write mixture + train YAML; keyword sections update the defaults below."""
    mixture = tmp_path / "mixture.yaml"
    mixture.write_text(yaml.safe_dump({"seq_len": 64, "seed": 5, "components": {
        "handbook": {"paths": str(token_dir / "*.parquet"), "sources": ["handbook"], "weight": 0.5},
        "postgres": {"paths": str(token_dir / "*.parquet"), "sources": ["postgres"], "weight": 0.5}}}))

    def write(name: str = "train.yaml", **sections: object) -> Path:
        config = {
            "model": {"preset": "tiny", "overrides": {"vocab_size": 2048}},
            "data": {"mixture": str(mixture)},
            "batch": {"global_batch_tokens": 512, "micro_batch_size": 4},
            "schedule": {"warmup_steps": 2},
            "max_steps": 8,
            "checkpoint": {"every_steps": 4, "keep_last": 2},
            "logging": {"progress_bar": False},
            "out": str(tmp_path / "run"),
        }
        for key, value in sections.items():
            config[key] = config[key] | value if isinstance(value, dict) and isinstance(config.get(key), dict) else value
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config))
        return path

    return write


@pytest.fixture
def long_context_config(train_config: Callable[..., Path], tmp_path: Path, token_dir: Path) -> Callable[..., Path]:
    """train_config over a mixture with a long-context phase: 4 steps of 4 x 64-token windows
    (grad_accum 2), then windows of 256 tokens, 2 per micro-batch (grad_accum 1); 512 tokens a step."""
    shards = str(token_dir / "*.parquet")
    weights = {"handbook": 0.5, "postgres": 0.5}
    mixture = tmp_path / "long-context-mixture.yaml"
    mixture.write_text(yaml.safe_dump({"seq_len": 64, "seed": 5, "components": {
        "handbook": {"paths": shards, "sources": ["handbook"]}, "postgres": {"paths": shards, "sources": ["postgres"]}},
        "phases": [{"name": "short", "tokens": 4 * 512, "weights": weights},
                   {"name": "long", "seq_len": 256, "micro_batch_size": 2, "weights": weights}]}))
    return lambda **sections: train_config(data={"mixture": str(mixture)}, **sections)
