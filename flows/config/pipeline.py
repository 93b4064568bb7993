"""The pipeline YAML: a workdir, the curate config and the training tail, validated in one go.

    workdir: pipeline-work          # curation/, data/, train/, model-hf/, report.html under it
    curate:   {...}                  # a curate config (examples/curate.yaml); its workdir: WORKDIR/curation
    training: {vocab_size, seq_len, nproc, train: {...}}   # train: `ccforge train` fields (examples/train.yaml)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flows.config.curate import CurateConfig, config_error, read_config_mapping
from flows.pipeline import TrainingSettings
from training.trainer.config import TrainConfig


class TrainingSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vocab_size: int = Field(default=TrainingSettings.vocab_size, ge=256)  # the BPE tokenizer trained on curated text
    seq_len: int = Field(default=TrainingSettings.seq_len, ge=8)
    nproc: int = Field(default=TrainingSettings.nproc, ge=1)  # torchrun processes
    train: dict[str, Any] = Field(default_factory=dict)


class PipelineSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    workdir: str = "pipeline-work"
    curate: dict[str, Any] = Field(default_factory=dict)
    training: TrainingSection = Field(default_factory=TrainingSection)


@dataclass(frozen=True)
class PipelineConfig:
    workdir: Path
    curate: CurateConfig
    training: TrainingSettings


def load_pipeline_config(path: str | Path, **overrides: object) -> PipelineConfig:
    """Read and validate the pipeline YAML (every section and the train fields) with one-line errors."""
    try:
        section = PipelineSection.model_validate(read_config_mapping(path, overrides))
    except ValidationError as err:
        raise config_error(path, err) from err
    workdir = Path(section.workdir)
    try:
        curate = CurateConfig.model_validate({"workdir": str(workdir / "curation")} | section.curate)
    except ValidationError as err:
        raise config_error(path, err, section="curate") from None
    try:  # the pipeline fills in data.mixture; everything else is checked before any work starts
        TrainConfig.model_validate(section.training.train | {"data": section.training.train.get("data", {})
                                                             | {"mixture": "set-by-the-pipeline.yaml"}})
    except ValidationError as err:
        raise config_error(path, err, section="training.train") from None
    training = TrainingSettings(vocab_size=section.training.vocab_size, seq_len=section.training.seq_len,
                                train=section.training.train, nproc=section.training.nproc)
    return PipelineConfig(workdir=workdir, curate=curate, training=training)

