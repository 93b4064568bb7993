"""The pipeline YAML: a workdir, the curate config and the training tail, validated in one go.

    workdir: pipeline-work          # curation/, data/, train/, model-hf/, report.html under it
    curate:   {...}                  # a curate config (examples/curate.yaml); its workdir: WORKDIR/curation
    training: {vocab_size, seq_len, nproc, train: {...}}   # train: `ccforge train` fields (examples/train.yaml)
    ablation: {seeds, variants, train}   # optional: proxy models on variants of the pipeline's mixture
    evaluation: {text_sets, tasks, include_paths, limit}   # optional: `ccforge eval` of the exported model
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flows.config.ablate import PER_RUN_FIELDS, AblationConfig, VariantSpec
from flows.config.curate import CurateConfig
from flows.config.evaluation import EvaluationSection
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


class AblationSection(BaseModel):
    """Proxy models on variants of the mixture the pipeline built (its components: high-quality,
    medium-quality, low-quality, synthetic, as present), after the main training run."""

    model_config = ConfigDict(extra="forbid")
    seeds: list[int] = Field(default_factory=lambda: [1, 2, 3], min_length=1)  # one run per seed and variant
    variants: dict[str, VariantSpec] = Field(min_length=2)  # e.g. high-only: {weights: {high-quality: 1}}; full: {}
    train: dict[str, Any] = Field(default_factory=dict)  # overrides of training.train for the proxy runs


class PipelineSection(BaseModel):
    """`ccforge schedule --flow pipeline`: curate, tokenize and mix, train, export, report."""

    model_config = ConfigDict(extra="forbid")
    workdir: str = "pipeline-work"  # curation/, data/, train/, model-hf/ and report.html under it
    curate: dict[str, Any] = Field(default_factory=dict)  # a curate config (see the curate section)
    training: TrainingSection = Field(default_factory=TrainingSection)
    ablation: AblationSection | None = None  # proxy-model ablations after training (WORKDIR/ablation)
    evaluation: EvaluationSection | None = None  # downstream evaluation of WORKDIR/model-hf


@dataclass(frozen=True)
class PipelineConfig:
    workdir: Path
    curate: CurateConfig
    training: TrainingSettings
    ablation: AblationConfig | None = None  # its mixture is WORKDIR/data/mixture.yaml, made by the pipeline
    evaluation: EvaluationSection | None = None


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
    return PipelineConfig(workdir=workdir, curate=curate, training=training,
                          ablation=_ablation(section, path) if section.ablation else None,
                          evaluation=section.evaluation)


def _ablation(section: PipelineSection, path: str | Path) -> AblationConfig:
    """The ablation over the pipeline's own mixture: training.train with the section's overrides
    (vocab_size as the pipeline sets it), each run under WORKDIR/ablation."""
    workdir = Path(section.workdir)
    train = merge_overrides(section.training.train, section.ablation.train)
    train = merge_overrides({k: v for k, v in train.items() if k not in PER_RUN_FIELDS},  # the runs set their own
                            {"model.overrides.vocab_size": section.training.vocab_size})
    config = {"out": str(workdir / "ablation"), "mixture": str(workdir / "data" / "mixture.yaml"),
              "seeds": section.ablation.seeds, "variants": section.ablation.model_dump()["variants"],
              "train": train, "nproc": section.training.nproc}
    ablation = validate_config(AblationConfig, config, path, ConfigError, section="ablation")
    validate_config(TrainConfig, merge_overrides(train, {"data.mixture": "set-by-the-pipeline.yaml"}),
                    path, ConfigError, section="ablation.train")
    return ablation
