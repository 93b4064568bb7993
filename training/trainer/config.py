"""The `ccforge train` YAML config, validated into pydantic models with one-line errors.

Every field has a default except the mixture; `examples/train.yaml` shows them all.
Batch arithmetic: global_batch_tokens = seq_len x micro_batch_size x grad_accum x world_size,
so gradient accumulation follows from the others and must come out whole. A mixture phase
may set its own seq_len and micro_batch_size (a long-context phase); global_batch_tokens
holds in every phase, so each phase has its own grad_accum, and the learning-rate schedule,
which counts optimizer steps, runs on unchanged.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from training.data.mixture import MixturePlan
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
    micro_batch_size: int = Field(default=4, gt=0)  # sequences per rank per forward/backward (a mixture phase may set its own)


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
    """FSDP2, expert parallelism and compilation, applied from outside the model."""

    param_dtype: Literal["bf16", "fp32"] = "bf16"  # FSDP2 compute dtype of parameters
    reduce_dtype: Literal["bf16", "fp32"] = "fp32"  # gradient reduce-scatter dtype
    #: ranks that split every MoE layer's routed experts between them (tokens travel by all-to-all);
    #: must divide the world size and n_routed_experts. 1: every rank holds all experts (FSDP only)
    expert_parallel: int = Field(default=1, ge=1)
    activation_checkpointing: bool = False  # recompute each block's activations in the backward pass
    compile: bool = False  # torch.compile each block

    def check_world_size(self, world_size: int) -> None:
        """Expert parallel groups must tile the ranks (the world size is known only at launch)."""
        if world_size % self.expert_parallel:
            raise TrainConfigError(f"parallel.expert_parallel {self.expert_parallel} must divide the world size "
                                   f"{world_size}")


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


class EvalSection(_Section):
    """Held-out evaluation: loss and bits per byte on fixed windows of each set, every
    `every_steps` and at the last step; off when there are no sets."""

    #: share of every mixture component's documents held out (by a hash of the id) and never
    #: trained on: one evaluation set per component, named after it
    holdout: float | None = Field(default=None, gt=0, lt=1)
    sets: dict[str, list[str]] = Field(default_factory=dict)  # set name -> globs of token shards (a single string is accepted)
    every_steps: int = Field(default=100, gt=0)  # evaluate every this many optimizer steps (and at the last)
    #: per set: the first this many windows of the mixture's seq_len, the same every time (fewer if the set is smaller)
    windows: int = Field(default=32, gt=0)
    batch_size: int = Field(default=4, gt=0)  # windows per forward pass on each rank

    @model_validator(mode="before")
    @classmethod
    def _one_path(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("sets"), dict):
            return data | {"sets": {name: [paths] if isinstance(paths, str) else paths
                                    for name, paths in data["sets"].items()}}
        return data

    @model_validator(mode="after")
    def _named_sets(self) -> EvalSection:
        for name, paths in self.sets.items():
            if not name or not paths:
                raise ValueError(f"sets: every set needs a name and at least one path (set {name!r}: {paths})")
        return self

    @property
    def enabled(self) -> bool:
        return self.holdout is not None or bool(self.sets)


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
    eval: EvalSection = Field(default_factory=EvalSection)
    max_steps: int = Field(default=100, gt=0)  # optimizer steps of the whole run
    max_skipped_steps: int = Field(default=5, ge=0)  # abort after this many non-finite steps in a row
    seed: int = 1234  # of the initialisation and the data order
    out: str = "runs/train"  # the run directory: checkpoints, metrics, logs

    @model_validator(mode="after")
    def _experts_split_evenly(self) -> TrainConfig:
        ep = self.parallel.expert_parallel
        if ep == 1:
            return self
        model = self.model.hybrid_config()
        if "E" not in model.pattern + model.mtp_pattern * model.num_nextn_predict_layers:
            raise ValueError(f"parallel.expert_parallel: {ep} needs a model with MoE layers ({model.pattern!r} "
                             "has none); set it to 1")
        if model.n_routed_experts % ep:
            raise ValueError(f"parallel.expert_parallel: {ep} must divide the model's n_routed_experts "
                             f"{model.n_routed_experts}")
        return self


def grad_accum_steps(cfg: TrainConfig, *, seq_len: int, world_size: int, micro_batch_size: int | None = None,
                     phase: str | None = None) -> int:
    """Micro-steps per optimizer step with micro-batches of `micro_batch_size` (default
    batch.micro_batch_size) windows of `seq_len`; the batch numbers must divide evenly. The
    error names mixture `phase` if given."""
    micro_batch_size = micro_batch_size or cfg.batch.micro_batch_size
    per_micro_step = seq_len * micro_batch_size * world_size
    if cfg.batch.global_batch_tokens % per_micro_step:
        raise TrainConfigError(
            f"batch.global_batch_tokens {cfg.batch.global_batch_tokens} is not a multiple of seq_len {seq_len} x "
            f"micro_batch_size {micro_batch_size} x world size {world_size} = {per_micro_step}"
            + (f" (mixture phase {phase!r})" if phase else "")
        )
    return cfg.batch.global_batch_tokens // per_micro_step


@dataclass(frozen=True)
class PhaseBatch:
    """One mixture phase's batch shape: grad_accum micro-batches per rank per optimizer step,
    each of micro_batch_size windows of seq_len tokens."""

    name: str
    end: int | None  # the token where the phase ends; None: it runs to the end
    seq_len: int
    micro_batch_size: int
    grad_accum: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.seq_len, self.micro_batch_size


@dataclass(frozen=True)
class BatchSchedule:
    """The batch shape of every mixture phase; every optimizer step is global_batch_tokens."""

    global_batch_tokens: int
    phases: tuple[PhaseBatch, ...]

    def at_step(self, step: int) -> PhaseBatch:
        """The shape of optimizer step `step` (0-based): that of the phase holding its first token
        (past the planned phases, the last one's: the loader will run out)."""
        first_token = step * self.global_batch_tokens
        return next((p for p in self.phases if p.end is None or first_token < p.end), self.phases[-1])


def batch_schedule(cfg: TrainConfig, plan: MixturePlan, *, world_size: int) -> BatchSchedule:
    """Each phase's batch shape, checked: grad accumulation comes out whole in every phase, and
    the shape changes only between optimizer steps."""
    phases = []
    for phase in plan.phases:
        micro_batch_size = phase.micro_batch_size or cfg.batch.micro_batch_size
        grad_accum = grad_accum_steps(cfg, seq_len=phase.seq_len, world_size=world_size,
                                      micro_batch_size=micro_batch_size, phase=phase.name)
        phases.append(PhaseBatch(name=phase.name, end=phase.end, seq_len=phase.seq_len,
                                 micro_batch_size=micro_batch_size, grad_accum=grad_accum))
    _check_shape_changes(phases, global_batch_tokens=cfg.batch.global_batch_tokens,
                         workers=max(1, cfg.data.num_workers))
    return BatchSchedule(global_batch_tokens=cfg.batch.global_batch_tokens, phases=tuple(phases))


def _check_shape_changes(phases: list[PhaseBatch], *, global_batch_tokens: int, workers: int) -> None:
    """A phase boundary that changes seq_len or micro_batch_size must fall between optimizer steps,
    after the same number of whole micro-batches from every DataLoader worker of every rank (they
    take turns). So the tokens since the last change must be whole steps, and whole rounds of
    the workers: a multiple of global_batch_tokens x lcm(grad_accum, workers) / grad_accum."""
    since = 0  # the token of the last change of shape
    for before, after in zip(phases, phases[1:]):
        if before.shape == after.shape:
            continue
        multiple = global_batch_tokens * math.lcm(before.grad_accum, workers) // before.grad_accum
        if (before.end - since) % multiple:
            raise TrainConfigError(
                f"mixture phase {after.name!r} changes seq_len x micro_batch_size from {before.seq_len} x "
                f"{before.micro_batch_size} to {after.seq_len} x {after.micro_batch_size} at token {before.end:,}, "
                f"which is not between optimizer steps: make the tokens from {since:,} to there a multiple of {multiple:,} "
                + ("(batch.global_batch_tokens)" if multiple == global_batch_tokens
                   else f"(batch.global_batch_tokens x {multiple // global_batch_tokens}, for {workers} DataLoader workers)"))
        since = before.end


def load_train_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read YAML (JSON is YAML too), merge overrides such as {"precision.recipe": "fp8"}, validate."""
    return load_config(TrainConfig, path, overrides, TrainConfigError)
