"""The `ccforge ablate` YAML: proxy models trained on named mixture variants, several seeds each.

    out: ablation                  # runs/, mixtures/, ablation.json, report.md, report.html
    mixture: work/data/mixture.yaml  # the base mixture that `weights` variants reweight
    seeds: [1, 2, 3]
    train: {model: {...}, batch: {...}, max_steps: 60, eval: {...}}   # shared by every run
    variants:
      high-only: {weights: {high-quality: 1.0}}
      full-blend: {}                                  # the base mixture as it is
      other-curation: {mixture: other/data/mixture.yaml}

Every run has the same preset, batch, schedule and token budget (max_steps x global_batch_tokens)
and the same evaluation sets; only the mixture and the seed change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flows.errors import ConfigError
from training.trainer.config import TrainConfig
from training.yaml_config import load_config, merge_overrides, validate_config

#: train fields each run sets itself
PER_RUN_FIELDS = ("seed", "out")


class VariantSpec(BaseModel):
    """One arm of the ablation: a mixture YAML, or the base mixture with other weights, or the base as it is."""

    model_config = ConfigDict(extra="forbid")
    mixture: str | None = None  # a mixture YAML of its own (e.g. another curate config's tokens)
    weights: dict[str, float] | None = None  # the base mixture's components reweighted; a missing one gets 0

    @model_validator(mode="after")
    def _one_source(self) -> VariantSpec:
        if self.mixture is not None and self.weights is not None:
            raise ValueError("give either mixture or weights, not both")
        if self.weights is not None and not any(w > 0 for w in self.weights.values()):
            raise ValueError("weights: at least one component needs a positive weight")
        if self.weights is not None and any(w < 0 for w in self.weights.values()):
            raise ValueError("weights must not be negative")
        return self


class AblationConfig(BaseModel):
    """`ccforge ablate`: one proxy model per variant and seed, all evaluated on the same sets."""

    model_config = ConfigDict(extra="forbid")
    out: str = "ablation"  # runs/VARIANT/seed-N/, mixtures/, ablation.json, report.md, report.html
    mixture: str | None = None  # the base mixture of `weights` variants and of `{}` variants
    seeds: list[int] = Field(default_factory=lambda: [1, 2, 3], min_length=1)  # one run per seed and variant
    variants: dict[str, VariantSpec] = Field(min_length=2)  # name -> mixture; at least two to compare
    train: dict[str, Any] = Field(default_factory=dict)  # `ccforge train` fields shared by every run (no seed, out)
    nproc: int = Field(default=1, ge=1)  # torchrun processes per run

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds repeat: {seeds}")
        return seeds

    @model_validator(mode="after")
    def _base_for_weights(self) -> AblationConfig:
        needs_base = [name for name, v in self.variants.items() if v.mixture is None]
        if needs_base and self.mixture is None:
            raise ValueError(f"variants {needs_base} reweight or reuse the base mixture: set `mixture`")
        per_run = [name for name in PER_RUN_FIELDS if name in self.train]
        if per_run:
            raise ValueError(f"train.{per_run[0]} is set per run by the ablation; leave it out")
        if "mixture" in self.train.get("data", {}):
            raise ValueError("train.data.mixture is set per variant; use `mixture` and `variants`")
        return self


def variant_mixture(config: AblationConfig, name: str) -> dict[str, Any]:
    """The mixture mapping variant `name` trains on. A reweighted base keeps the base's seq_len, seed
    and every component with its filters (those left out at weight 0: never trained on, but their
    held-out documents are still evaluation sets, so every variant of the base is evaluated on the
    same sets); its phases give way to the one blend."""
    variant = config.variants[name]
    path = variant.mixture or config.mixture
    mixture = yaml.safe_load(Path(path).read_text())
    if variant.weights is None:
        return mixture
    unknown = sorted(set(variant.weights) - set(mixture.get("components", {})))
    if unknown:
        raise ConfigError(f"{path}: variant {name!r} weights components {unknown} it does not have "
                          f"(it has {sorted(mixture.get('components', {}))})")
    components = {c: spec | {"weight": variant.weights.get(c, 0.0)} for c, spec in mixture["components"].items()}
    total = sum(spec["weight"] for spec in components.values())
    for spec in components.values():
        spec["weight"] /= total
    mixture = {key: value for key, value in mixture.items() if key != "phases"}
    return mixture | {"components": components}


def run_train_mapping(config: AblationConfig, mixture_path: Path, seed: int, out: Path) -> dict[str, Any]:
    """The train YAML mapping of one run."""
    return merge_overrides(config.train, {"data.mixture": str(mixture_path.resolve()), "seed": seed,
                                          "out": str(out.resolve())})


def load_ablation_config(path: str | Path, *, check_mixtures: bool = True, **overrides: object) -> AblationConfig:
    """Read and validate the ablation YAML, the shared train fields and (`check_mixtures`) the
    variants' mixture files."""
    config = load_config(AblationConfig, path, {k: v for k, v in overrides.items() if v is not None}, ConfigError)
    for name, variant in config.variants.items() if check_mixtures else ():
        source = variant.mixture or config.mixture
        if not Path(source).is_file():
            raise ConfigError(f"{path}: variant {name!r}: mixture {source} does not exist")
        variant_mixture(config, name)  # unknown components fail here
    validate_config(TrainConfig, merge_overrides(config.train, {"data.mixture": "set-per-variant.yaml"}),
                    path, ConfigError, section="train")
    return config
