"""The `ccforge classifiers train | build-training-set` YAML: `classifiers.train.TrainConfig` one to one."""

from __future__ import annotations

from pathlib import Path

from classifiers.train import TrainConfig
from flows.errors import ConfigError
from training.yaml_config import load_config


def load_classifiers_config(path: str | Path | None, **overrides: object) -> TrainConfig:
    """Read YAML (only the defaults when `path` is None), merge the overrides, validate; errors name file and field."""
    return load_config(TrainConfig, path, overrides, ConfigError)
