"""The pipeline YAML: a workdir, the curate config and the training tail, validated in one go.

    workdir: pipeline-work          # curation/, data/, train/, model-hf/, report.html under it
    curate:   {...}                  # a curate config (examples/curate.yaml); its workdir: WORKDIR/curation
    training: {vocab_size, seq_len, nproc, train: {...}}   # train: `ccforge train` fields (examples/train.yaml)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flows.config.curate import CurateConfig
from flows.errors import ConfigError
from flows.pipeline import TrainingSettings
from training.trainer.config import TrainConfig
from training.yaml_config import load_config, merge_overrides, validate_config


class TrainingSection(BaseModel):
    """The training tail: a tokenizer trained on the curated text, the mixture's windows, the run."""

    model_config = ConfigDict(extra="forbid")
    vocab_size: int = Field(default=TrainingSettings.vocab_size, ge=256)  # the BPE tokenizer trained on curated text
    seq_len: int = Field(default=TrainingSettings.seq_len, ge=8)  # tokens per training window
    nproc: int = Field(default=TrainingSettings.nproc, ge=1)  # torchrun processes
    train: dict[str, Any] = Field(default_factory=dict)  # `ccforge train` fields (see the train section); data.mixture is set


class PipelineSection(BaseModel):
    """`ccforge schedule --flow pipeline`: curate, tokenize and mix, train, export, report."""

    model_config = ConfigDict(extra="forbid")
    workdir: str = "pipeline-work"  # curation/, data/, train/, model-hf/ and report.html under it
    curate: dict[str, Any] = Field(default_factory=dict)  # a curate config (see the curate section)
    training: TrainingSection = Field(default_factory=TrainingSection)


@dataclass(frozen=True)
class PipelineConfig:
    workdir: Path
    curate: CurateConfig
    training: TrainingSettings


def load_pipeline_config(path: str | Path, **overrides: object) -> PipelineConfig:
    """Read and validate the pipeline YAML (every section and the train fields) with one-line errors."""
    section = load_config(PipelineSection, path, overrides, ConfigError)
    workdir = Path(section.workdir)
    curate = validate_config(CurateConfig, merge_overrides({"workdir": str(workdir / "curation")}, section.curate),
                             path, ConfigError, section="curate")
    # The pipeline fills in data.mixture; everything else is checked before any work starts.
    validate_config(TrainConfig, merge_overrides(section.training.train, {"data.mixture": "set-by-the-pipeline.yaml"}),
                    path, ConfigError, section="training.train")
    training = TrainingSettings(vocab_size=section.training.vocab_size, seq_len=section.training.seq_len,
                                train=section.training.train, nproc=section.training.nproc)
    return PipelineConfig(workdir=workdir, curate=curate, training=training)
