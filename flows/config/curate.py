"""The curate YAML config: one pydantic model over the stages' own (pydantic dataclass) configs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from classifiers.ensemble import LEVELS
from classifiers.stage import ClassifyConfig
from curation.exact_dedup import ExactDedupConfig
from curation.extract_config import ExtractConfig
from curation.fuzzy_dedup.config import FuzzyDedupConfig
from curation.heuristics.config import HeuristicsConfig
from curation.langid import LangIdConfig
from curation.substring_dedup.config import SubstringDedupConfig
from curation.synthetic.config import RephraseConfig
from flows.errors import ConfigError
from training.yaml_config import load_config

#: Stages in the order the curate flow runs them (Nemotron-CC: exact, fuzzy, then substring dedup, then quality buckets,
#: then heuristics, which may spare the high-quality levels, then synthetic rephrasing of the
#: curated documents, whose rows go to WORKDIR/rephrase/ beside WORKDIR/curated/).
CURATION_STAGES = ("extract", "langid", "exact-dedup", "fuzzy-dedup", "substring-dedup", "classify", "heuristics",
                   "rephrase")

#: What `heuristics.apply_to_quality_levels: auto` becomes when classify runs (before heuristics, by the
#: order above): every level but `high`, the top one (bucket 19). Nemotron-CC keeps its high-quality
#: documents whatever the heuristic filters say, which keeps more unique high-quality tokens.
BELOW_HIGH_LEVELS = LEVELS[1:]


class InputSpec(BaseModel):
    """Files to curate: a path, directory or glob (any fsspec URL) and its dataset name."""

    model_config = ConfigDict(extra="forbid")
    path: str  # WARC (.warc.gz), JSONL or Parquet files: a path, directory or glob (any fsspec URL)
    source: str | None = None  # default: the name of the directory holding the files


class DaskSettings(BaseModel):
    """Where the stages run: a LocalCluster started for the run, or an existing Dask cluster."""

    model_config = ConfigDict(extra="forbid")
    scheduler: str | None = None  # tcp://host:8786 of an existing cluster; None starts a LocalCluster
    workers: int = Field(default=2, ge=1)  # LocalCluster worker processes
    threads_per_worker: int = Field(default=1, ge=1)  # LocalCluster threads per worker
    memory_limit: str = "auto"  # LocalCluster memory per worker ("4GiB"; auto: the machine's share)


class CurateConfig(BaseModel):
    """`ccforge curate`: inputs, the work directory, the Dask cluster and one section per stage."""

    model_config = ConfigDict(extra="forbid")
    inputs: list[InputSpec] = Field(default_factory=list)  # files to curate (or --input on the command line)
    workdir: str = "work"  # one directory per stage, curated/ and the report under it
    #: Default: every stage, `substring-dedup` only with a `substring_dedup` section, `classify` only
    #: when `classify.classifiers` names models and `rephrase` only when `rephrase.backend` is set.
    stages: list[str] | None = None
    strict: bool = False  # stop at the first unreadable input file instead of reporting it
    keep_rejects: bool = False  # write every dropped row to <stage>/rejected/, not only bad input
    batch_rows: int = Field(default=1000, ge=1)  # documents per Arrow batch: what a task holds in memory at once
    #: Inputs larger than this (uncompressed JSONL, Parquet with several row groups, .warc.gz) are
    #: cut into pieces of about this size, one task each; null: one task per file.
    split_bytes: int | None = Field(default=32 << 20, ge=1)
    dask: DaskSettings = Field(default_factory=DaskSettings)
    extract: ExtractConfig = Field(default_factory=ExtractConfig)
    langid: LangIdConfig = Field(default_factory=LangIdConfig)
    exact_dedup: ExactDedupConfig = Field(default_factory=ExactDedupConfig)
    fuzzy_dedup: FuzzyDedupConfig = Field(default_factory=FuzzyDedupConfig)
    #: No default unit (a tokenizer path or a byte length), so the stage runs only when configured.
    substring_dedup: SubstringDedupConfig | None = None
    classify: ClassifyConfig = Field(default_factory=ClassifyConfig)
    heuristics: HeuristicsConfig = Field(default_factory=HeuristicsConfig)
    rephrase: RephraseConfig = Field(default_factory=RephraseConfig)

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, stages: list[str] | None) -> list[str] | None:
        if stages is None:
            return None
        unknown = [s for s in stages if s not in CURATION_STAGES]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; choose from {list(CURATION_STAGES)}")
        if not stages:
            raise ValueError("stages is empty")
        return sorted(set(stages), key=CURATION_STAGES.index)

    @model_validator(mode="after")
    def _default_stages(self) -> CurateConfig:
        if self.stages is None:
            self.stages = [s for s in CURATION_STAGES if (s != "classify" or self.classify.classifiers)
                           and (s != "rephrase" or self.rephrase.backend)
                           and (s != "substring-dedup" or self.substring_dedup is not None)]
        elif "substring-dedup" in self.stages and self.substring_dedup is None:
            raise ValueError("stage substring-dedup needs a substring_dedup section with `tokenizer: PATH` "
                             "or `min_bytes: N` (see examples/curate.yaml)")
        elif "classify" in self.stages and not self.classify.classifiers:
            raise ValueError("stage classify needs classify.classifiers (see examples/classifiers.yaml)")
        if "rephrase" in self.stages:
            self.rephrase.require_backend()
        return self

    @model_validator(mode="after")
    def _heuristics_levels(self) -> CurateConfig:
        """Resolve `auto` with the stages now known; refuse level names the classify stage never writes."""
        levels = self.heuristics.apply_to_quality_levels
        if levels == "auto":
            levels = BELOW_HIGH_LEVELS if "classify" in self.stages else "all"
            self.heuristics = dataclasses.replace(self.heuristics, apply_to_quality_levels=levels)
        elif isinstance(levels, tuple) and (unknown := [level for level in levels if level not in LEVELS]):
            raise ValueError(f"heuristics.apply_to_quality_levels: unknown level(s) {unknown}; choose from {list(LEVELS)}")
        return self


def load_curate_config(path: str | Path | None, **overrides: object) -> CurateConfig:
    """Read YAML (or defaults when `path` is None), merge the overrides (`training.yaml_config.merge_overrides`:
    `fuzzy_dedup={"threshold": 0.7}` or `**{"fuzzy_dedup.threshold": 0.7}`), validate."""
    return load_config(CurateConfig, path, overrides, ConfigError)
