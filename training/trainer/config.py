"""The `ccforge train` YAML config, validated into pydantic models with one-line errors.

Every field has a default except the mixture; `examples/train.yaml` shows them all.
Batch arithmetic: global_batch_tokens = seq_len x micro_batch_size x grad_accum x world_size,
so gradient accumulation follows from the others and must come out whole.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from training.model import HybridConfig, get_preset
from training.model.hf_interop import config_from_hf
from training.precision import PrecisionConfig
from training.yaml_config import load_config


class TrainConfigError(ValueError):
    """A train config that cannot be used; the message is one line naming the file and field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSection(_Section):
    """The model's shape: a preset (`ccforge model info PRESET`), or a checkpoint's, with overrides."""

    preset: str = "tiny"  # tiny, nemotron-h-8b, nemotron-nano-9b-v2, nemotron-3-nano-30b-a3b, ...
    overrides: dict[str, Any] = Field(default_factory=dict)  # HybridConfig fields on top of the preset
    init_from: str | None = None  # a NemotronH (HF) checkpoint directory to continue pretraining from

    def hybrid_config(self) -> HybridConfig:
        """The preset's shape, or the `init_from` checkpoint's, with the overrides applied."""
        if self.init_from is None:
            return get_preset(self.preset, **self.overrides)
        config_path = Path(self.init_from) / "config.json"
        if not config_path.is_file():
            raise ValueError(f"init_from {self.init_from}: no config.json (expected a NemotronH checkpoint directory)")
        return replace(config_from_hf(json.loads(config_path.read_text())), **self.overrides)

    @model_validator(mode="after")
    def _valid_model(self) -> ModelSection:
        try:
            self.hybrid_config()
        except ValidationError as err:  # a bad override: name it under `overrides`
            first = err.errors()[0]
            where = ".".join(["overrides", *(str(part) for part in first["loc"])])
            raise ValueError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None
        return self


class DataSection(_Section):
    """What the model reads: a mixture of token shards, streamed and packed into windows."""

    mixture: str  # a mixture YAML (`ccforge mix` validates it; see examples/mixture.yaml)
    tokens: int | None = Field(default=None, gt=0)  # mixture token budget; default max_steps x global batch
    num_workers: int = Field(default=0, ge=0)  # DataLoader workers per rank
    document_boundaries: bool = True  # reset Mamba state and mask attention between packed documents


class BatchSection(_Section):
    """Batch arithmetic: global_batch_tokens = seq_len x micro_batch_size x grad_accum x world_size."""

    global_batch_tokens: int = Field(default=16384, gt=0)  # tokens per optimizer step over all ranks
    micro_batch_size: int = Field(default=4, gt=0)  # sequences per rank per forward/backward


class OptimizerSection(_Section):
    """AdamW; norms, biases and the Mamba A_log, D and dt_bias are not decayed."""

    lr: float = Field(default=3e-3, gt=0)  # peak learning rate
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)  # final lr / peak lr of the decay
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW (beta1, beta2)
    eps: float = Field(default=1e-8, gt=0)  # AdamW epsilon
    weight_decay: float = Field(default=0.1, ge=0)  # decoupled, on matrices and embeddings
    grad_clip: float | None = Field(default=1.0, gt=0)  # max global gradient norm; null: no clipping
    implementation: Literal["auto", "fused", "foreach", "for-loop"] = "auto"  # torch AdamW kernel; auto: fastest


class ScheduleSection(_Section):
    """Learning-rate schedule: linear warmup, then warmup-stable-decay, cosine or constant."""

    kind: Literal["wsd", "cosine", "constant"] = "wsd"  # wsd: warmup, stable, then a linear decay to min_lr_ratio
    warmup_steps: int = Field(default=10, ge=0)  # linear warmup from lr / warmup_steps
    decay_fraction: float = Field(default=0.2, ge=0, le=1)  # WSD: share of steps spent decaying


class ParallelSection(_Section):
    """FSDP2 and compilation, applied from outside the model."""

    param_dtype: Literal["bf16", "fp32"] = "bf16"  # FSDP2 compute dtype of parameters
    reduce_dtype: Literal["bf16", "fp32"] = "fp32"  # gradient reduce-scatter dtype
    activation_checkpointing: bool = False  # recompute each block's activations in the backward pass
    compile: bool = False  # torch.compile each block


class CheckpointSection(_Section):
    """Distributed checkpoints under OUT/checkpoints; `--resume` continues from the newest."""

    every_steps: int = Field(default=100, gt=0)  # save every this many steps (and at the end)
    keep_last: int = Field(default=3, gt=0)  # older checkpoints are deleted


class LoggingSection(_Section):
    """Loss, learning rate, throughput and MFU: OUT/metrics.jsonl, TensorBoard, the terminal."""

    every_steps: int = Field(default=1, gt=0)  # log every this many steps
    tensorboard: bool = True  # event files under OUT/tensorboard
    progress_bar: bool = True  # a progress bar on rank 0
    peak_tflops: float | None = Field(default=None, gt=0)  # per device, for MFU; None: looked up / measured


class TrainConfig(_Section):
    """`ccforge train`: the model, its data and every knob of the run."""

    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection
    batch: BatchSection = Field(default_factory=BatchSection)
    optimizer: OptimizerSection = Field(default_factory=OptimizerSection)
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)
    precision: PrecisionConfig = Field(default_factory=PrecisionConfig)
    parallel: ParallelSection = Field(default_factory=ParallelSection)
    checkpoint: CheckpointSection = Field(default_factory=CheckpointSection)
    logging: LoggingSection = Field(default_factory=LoggingSection)
    max_steps: int = Field(default=100, gt=0)  # optimizer steps of the whole run
    max_skipped_steps: int = Field(default=5, ge=0)  # abort after this many non-finite steps in a row
    seed: int = 1234  # of the initialisation and the data order
    out: str = "runs/train"  # the run directory: checkpoints, metrics, logs


def grad_accum_steps(cfg: TrainConfig, *, seq_len: int, world_size: int) -> int:
    """Micro-steps per optimizer step; the batch numbers must divide evenly."""
    per_micro_step = seq_len * cfg.batch.micro_batch_size * world_size
    if cfg.batch.global_batch_tokens % per_micro_step:
        raise TrainConfigError(
            f"batch.global_batch_tokens {cfg.batch.global_batch_tokens} is not a multiple of seq_len {seq_len} x "
            f"micro_batch_size {cfg.batch.micro_batch_size} x world size {world_size} = {per_micro_step}"
        )
    return cfg.batch.global_batch_tokens // per_micro_step


def load_train_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read YAML (JSON is YAML too), merge overrides such as {"precision.recipe": "fp8"}, validate."""
    return load_config(TrainConfig, path, overrides, TrainConfigError)
