"""The `pipeline` Prefect flow: crawl -> curated (+ synthetic) -> tokens -> mixture ->
pretraining -> Hugging Face export, as three subflows (curate, build_mixture, pretrain).

Every subflow skips work it finished before (stage keys, tokenize key, newest checkpoint),
so rerunning the pipeline after a crash continues where it stopped.

    WORKDIR/curation/    the curate flow's stages, curated/ and rephrase/ (synthetic rows)
    WORKDIR/data/        tokenizer/, tokens/, mixture.yaml, mixture-report/
    WORKDIR/train.yaml   the training config the pipeline wrote (the mixture filled in)
    WORKDIR/train/       checkpoints/, metrics.jsonl, tensorboard/
    WORKDIR/model-hf/    the exported NemotronH model and its tokenizer
    WORKDIR/model-hf/lm-eval-results.json   with an evaluation section: `ccforge eval` of the model
    WORKDIR/ablation/    with an ablation section: proxy models on variants of the mixture (flows.ablate)
    WORKDIR/report.html  the run report (`ccforge report WORKDIR`), report.md and report-images/
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prefect import flow

from curation.stage import StageStats
from flows.ablate import AblationResult, ablate
from flows.build_mixture import MixtureBuild, build_mixture
from flows.config.ablate import AblationConfig
from flows.config.evaluation import EvaluationSection
from flows.evaluate import evaluate_model
from flows.config.curate import CurateConfig
from flows.curate import curate
from flows.engine.stage_dir import stage_finished
from flows.pretrain import PretrainResult, pretrain
from flows.report.render import publish_report_artifact, write_run_report
from training.trainer.config import TrainConfig


@dataclass(frozen=True)
class TrainingSettings:
    """The pipeline's training tail: tokenizer size, window length, and train YAML fields."""

    vocab_size: int = 4096
    seq_len: int = 256
    train: dict[str, Any] = field(default_factory=dict)  # `ccforge train` config fields; data.mixture is set
    nproc: int = 1


@dataclass(frozen=True)
class PipelineResult:
    curation: list[StageStats]
    mixture: MixtureBuild
    training: PretrainResult
    report: Path  # WORKDIR/report.html (report.md beside it)
    ablation: AblationResult | None = None
    evaluation: Path | None = None  # WORKDIR/model-hf/lm-eval-results.json


def train_config(settings: TrainingSettings, mixture: Path, workdir: Path) -> dict[str, Any]:
    """The train YAML mapping: the settings' fields, the mixture, a vocabulary that fits, the run dir.
    Its paths are absolute (relative ones as seen from here), so `ccforge train WORKDIR/train.yaml`
    works from any directory."""
    config = {key: dict(value) if isinstance(value, dict) else value for key, value in settings.train.items()}
    config["data"] = config.get("data", {}) | {"mixture": str(Path(mixture).resolve())}
    model = config.setdefault("model", {})
    model["overrides"] = model.get("overrides", {}) | {"vocab_size": settings.vocab_size}
    if model.get("init_from"):
        model["init_from"] = str(Path(model["init_from"]).resolve())
    config["out"] = str(Path(config.get("out") or workdir / "train").resolve())
    return config


@flow(name="pipeline", log_prints=True, validate_parameters=False)  # configs arrive validated
def pipeline(curate_config: CurateConfig, workdir: str | Path, training: TrainingSettings | None = None,
             ablation: AblationConfig | None = None, evaluation: EvaluationSection | None = None) -> PipelineResult:
    training = training or TrainingSettings()
    workdir = Path(workdir)
    mixture = workdir / "data" / "mixture.yaml"
    train_mapping = train_config(training, mixture, workdir)
    train_cfg = TrainConfig.model_validate(train_mapping)  # a bad training config fails before curating
    stats = curate(curate_config)
    curated = Path(curate_config.workdir)
    inputs = [str(curated / "curated")]
    if stage_finished(curated / "rephrase"):
        inputs.append(str(curated / "rephrase"))
    built = build_mixture(inputs, mixture.parent, vocab_size=training.vocab_size, seq_len=training.seq_len,
                          budget=train_cfg.max_steps * train_cfg.batch.global_batch_tokens,
                          scheduler=curate_config.dask.scheduler, workers=curate_config.dask.workers)
    config_path = workdir / "train.yaml"
    config_path.write_text(yaml.safe_dump(train_mapping, sort_keys=False))
    result = pretrain(str(config_path), nproc=training.nproc, export_to=str(workdir / "model-hf"))
    evaluated = evaluate_model(result.hf_dir, evaluation, curated=curated / "curated",
                               holdout=train_cfg.eval.holdout) if evaluation else None
    ablated = ablate(ablation) if ablation else None  # proxy models on variants of the mixture just built
    report = write_run_report(workdir)
    publish_report_artifact(report["markdown"])
    return PipelineResult(curation=stats, mixture=built, training=result, report=report["html"], ablation=ablated,
                          evaluation=evaluated)
