"""Token mixtures: a YAML config of named components and phases, checked and planned.

A component is a glob of token shards, optional row filters (source, quality level,
synthetic kind), a weight and an optional `max_epochs`. Phases (Nemotron-H, section 2.4:
blends that shift toward high-quality data late in training) each give their own weights
and a token budget; only the last phase may leave its budget open. A phase may also set
its own `seq_len` and `micro_batch_size`: a long-context phase (Nemotron Nano 2,
arXiv:2508.14444, continues pretraining at 512k tokens per sequence). Everything is checked
against the shards' footers (no tokens are read): missing shards, weights that do not sum
to 1, and components that a token budget would read more than `max_epochs` times.

Budgets are tokens; windows are whole. Each phase holds the whole windows of its seq_len
that end by its last token, and the rest (less than one window) passes to the next phase,
so rounding never accumulates and a phase must hold at least one window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from training.data.heldout import Holdout
from training.data.shards import RowFilter, TokenShard, expand_shards, read_token_shard, stream_tokens
from training.yaml_config import load_config

WEIGHT_TOLERANCE = 1e-6


class MixtureError(ValueError):
    """A mixture that cannot be used; the message is one line naming the file, field or component."""


class ComponentSpec(BaseModel):
    """Token shards and the rows of them this component reads; a null in a filter list selects rows without the column."""

    model_config = ConfigDict(extra="forbid")
    paths: list[str] = Field(min_length=1)  # globs of token shards (a single string is accepted)
    weight: float | None = Field(default=None, ge=0)  # without phases: share of tokens
    max_epochs: float | None = Field(default=None, gt=0)  # most times the budget may read this component's tokens
    sources: list[str | None] | None = None  # keep rows of these `source` values; null: all
    quality_levels: list[str | None] | None = None  # keep rows of these quality levels (high, medium-high, ...); null: all
    synthetic_kinds: list[str | None] | None = None  # keep rows of these synthetic kinds (null in the list: real documents)

    @model_validator(mode="before")
    @classmethod
    def _one_path(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("paths"), str):
            return data | {"paths": [data["paths"]]}
        return data

    @property
    def row_filter(self) -> RowFilter:
        as_tuple = lambda values: None if values is None else tuple(values)  # noqa: E731
        return RowFilter(sources=as_tuple(self.sources), quality_levels=as_tuple(self.quality_levels),
                         synthetic_kinds=as_tuple(self.synthetic_kinds))


class PhaseSpec(BaseModel):
    """A blend for a stretch of training (Nemotron-H, section 2.4)."""

    model_config = ConfigDict(extra="forbid")
    name: str  # unique among the phases
    tokens: int | None = Field(default=None, gt=0)  # budget; None (last phase only): to the end
    weights: dict[str, float]  # component -> share of this phase's tokens (sum to 1; missing: 0)
    seq_len: int | None = Field(default=None, gt=0)  # tokens per window in this phase; null: the mixture's seq_len
    micro_batch_size: int | None = Field(default=None, gt=0)  # windows per rank per micro-step; null: batch.micro_batch_size


class MixtureConfig(BaseModel):
    """`ccforge mix` and the trainer's `data.mixture`: named components, their weights or phases."""

    model_config = ConfigDict(extra="forbid")
    seq_len: int = Field(gt=0)  # tokens per training window (the loader packs seq_len + 1); phases may override it
    seed: int = 0  # of the deterministic sampling order
    components: dict[str, ComponentSpec] = Field(min_length=1)  # name -> component
    phases: list[PhaseSpec] | None = None  # blends that change over training; null: the components' weights

    @model_validator(mode="after")
    def _check_weights(self) -> MixtureConfig:
        if not self.phases:
            missing = [name for name, c in self.components.items() if c.weight is None]
            if missing:
                raise ValueError(f"component {missing[0]!r} has no weight (or give phases with weights)")
            _check_sum("component weights", {n: c.weight for n, c in self.components.items()})
            return self
        weighted = [name for name, c in self.components.items() if c.weight is not None]
        if weighted:
            raise ValueError(f"component {weighted[0]!r} sets a weight but phases give the weights; remove one")
        for i, phase in enumerate(self.phases):
            unknown = sorted(set(phase.weights) - set(self.components))
            if unknown:
                raise ValueError(f"phase {phase.name!r}: unknown component {unknown[0]!r} "
                                 f"(components: {', '.join(self.components)})")
            if any(w < 0 for w in phase.weights.values()):
                raise ValueError(f"phase {phase.name!r}: weights must not be negative")
            _check_sum(f"weights of phase {phase.name!r}", phase.weights)
            if phase.tokens is None and i < len(self.phases) - 1:
                raise ValueError(f"phase {phase.name!r} has no tokens; only the last phase may run to the end")
        names = [p.name for p in self.phases]
        if len(set(names)) < len(names):
            raise ValueError(f"phase names repeat: {names}")
        return self

    def phase_specs(self) -> list[PhaseSpec]:
        """The phases; without phases, one open phase of the components' weights."""
        if self.phases:
            return self.phases
        return [PhaseSpec(name="all", weights={n: float(c.weight) for n, c in self.components.items()})]


def _check_sum(what: str, weights: dict[str, float]) -> None:
    total = sum(weights.values())
    if abs(total - 1.0) > WEIGHT_TOLERANCE:
        listed = ", ".join(f"{n}: {w:g}" for n, w in weights.items())
        raise ValueError(f"{what} sum to {total:g}, not 1 ({listed})")


def load_mixture(path: str | Path, overrides: dict[str, object] | None = None) -> MixtureConfig:
    """Read a mixture YAML, merge overrides such as {"seq_len": 512}, validate; errors are one line
    naming the file and the field."""
    return load_config(MixtureConfig, path, overrides, MixtureError, "mixture file")


# ------------------------------------------------------------------------------- on disk


@dataclass(frozen=True)
class Component:
    """A component resolved against the disk: its shards and what its filters select."""

    name: str
    shards: tuple[TokenShard, ...]
    row_filter: RowFilter
    docs: int
    tokens: int  # stream tokens available in one epoch (EOS separators included)
    max_epochs: float | None


def resolve_components(config: MixtureConfig) -> list[Component]:
    """Find every component's shards and count its tokens from the footers."""
    resolved, eos_ids = [], set()
    for name, spec in config.components.items():
        paths = sorted({p for pattern in spec.paths for p in expand_shards(pattern)})
        if not paths:
            raise MixtureError(f"component {name!r}: no token shards match {', '.join(spec.paths)}")
        shards = tuple(read_token_shard(p) for p in paths)
        docs, tokens = stream_tokens(list(shards), spec.row_filter)
        if tokens == 0:
            raise MixtureError(f"component {name!r}: no documents match {spec.row_filter.describe()} "
                               f"in {len(shards)} shard(s)")
        eos_ids.update(s.eos_id for s in shards if not s.add_eos)
        resolved.append(Component(name=name, shards=shards, row_filter=spec.row_filter, docs=docs,
                                  tokens=tokens, max_epochs=spec.max_epochs))
    if None in eos_ids:
        raise MixtureError("some token shards have no EOS token to separate documents; tokenize with add_eos: true")
    if len(eos_ids) > 1:
        raise MixtureError(f"token shards disagree on the EOS id ({sorted(eos_ids)}): tokenized with different tokenizers?")
    return resolved


# -------------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class PhasePlan:
    name: str
    start: int  # first token of the phase (tokens count window positions: seq_len per window)
    tokens: int | None  # None: runs until the loader is stopped
    weights: dict[str, float]
    seq_len: int  # tokens per window in this phase
    micro_batch_size: int | None  # windows per rank per micro-step; None: the loader's batch size

    @property
    def end(self) -> int | None:
        return None if self.tokens is None else self.start + self.tokens


@dataclass(frozen=True)
class MixturePlan:
    """Phases placed on the token axis, and the components they draw from."""

    config: MixtureConfig
    components: list[Component]
    phases: list[PhasePlan]

    @property
    def total_tokens(self) -> int | None:
        return self.phases[-1].end

    def phase_end_windows(self) -> list[int | None]:
        """Global window index at which each phase ends: its whole windows of its seq_len new
        tokens that end by its last token (the rest of the tokens pass to the next phase)."""
        ends, window, position = [], 0, 0  # position: the token where the next window starts
        for phase in self.phases:
            if phase.end is None:
                ends.append(None)
                continue
            count = (phase.end - position) // phase.seq_len
            window, position = window + count, position + count * phase.seq_len
            ends.append(window)
        return ends

    def with_holdout(self, holdout: Holdout) -> MixturePlan:
        """This plan reading only `holdout`'s side of every component's documents. Token counts
        stay the footers': epochs count the held-out documents too."""
        components = [replace(c, row_filter=replace(c.row_filter, holdout=holdout)) for c in self.components]
        return replace(self, components=components)

    def drawn(self, phase: PhasePlan, component: str) -> float:
        return 0.0 if phase.tokens is None else phase.weights[component] * phase.tokens

    def epochs(self) -> dict[str, list[float]]:
        """Cumulative epochs of each component at the end of each phase."""
        out = {}
        for c in self.components:
            cumulative = 0.0
            out[c.name] = [cumulative := cumulative + self.drawn(p, c.name) / c.tokens for p in self.phases]
        return out


def plan_mixture(config: MixtureConfig, tokens: int | None = None,
                 components: list[Component] | None = None) -> MixturePlan:
    """Place the phases on a budget of `tokens` (None: as configured) and check `max_epochs`."""
    components = resolve_components(config) if components is None else components
    phases, start = [], 0
    for spec in config.phase_specs():
        budget = spec.tokens
        if tokens is not None:
            budget = tokens - start if budget is None else min(budget, tokens - start)
            if budget <= 0:
                break
        phases.append(PhasePlan(name=spec.name, start=start, tokens=budget,
                                weights={n: float(spec.weights.get(n, 0.0)) for n in config.components},
                                seq_len=spec.seq_len or config.seq_len, micro_batch_size=spec.micro_batch_size))
        start += budget or 0
    if tokens is not None and start < tokens:
        raise MixtureError(f"phases cover {start:,} tokens but {tokens:,} were asked for; "
                           "leave out the last phase's tokens to let it run to the end")
    short = next((p for p in phases if p.tokens is not None and p.tokens < p.seq_len), None)
    if short is not None:
        raise MixtureError(f"phase {short.name!r} has {short.tokens} tokens, less than one window (seq_len {short.seq_len})")
    plan = MixturePlan(config=config, components=components, phases=phases)
    _check_epochs(plan)
    return plan


def _check_epochs(plan: MixturePlan) -> None:
    for component in plan.components:
        epochs = plan.epochs()[component.name][-1]
        if component.max_epochs is not None and epochs > component.max_epochs + 1e-9:
            drawn = sum(plan.drawn(p, component.name) for p in plan.phases)
            raise MixtureError(
                f"component {component.name!r} would be read {epochs:.2f} times ({math.ceil(drawn):,} of "
                f"{component.tokens:,} tokens) but max_epochs is {component.max_epochs:g}")
