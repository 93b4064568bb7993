"""The pipeline's `evaluation:` section: `ccforge eval` of the model it exported."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EvaluationSection(BaseModel):
    """`ccforge eval` on the exported model (lm-eval, offline). With `training.train.eval.holdout`,
    the curated documents held out of training are a text set of their own, `held-out`."""

    model_config = ConfigDict(extra="forbid")
    text_sets: dict[str, str] = Field(default_factory=dict)  # name -> JSONL/Parquet documents (a `text` column)
    tasks: list[str] = Field(default_factory=list)  # lm-eval task names, their data local
    include_paths: list[str] = Field(default_factory=list)  # directories of lm-eval task YAMLs
    limit: int | None = Field(default=None, gt=0)  # documents per task (the first ones)
    batch_size: int = Field(default=8, gt=0)
