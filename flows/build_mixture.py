"""The `build_mixture` Prefect flow: tokenizer, token shards and a quality-weighted mixture.

From curated (and synthetic) Parquet: train a byte-level BPE unless one is given or already
trained, tokenize on Dask (skipped when finished under the same key), write a mixture YAML
whose components are the quality levels present, blended Nemotron-CC style (high quality
and synthetic data weighted up), then check it and write its report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from curation.io.readers import iter_texts
from curation.tokens import TokenizeConfig, TokenStats, train_tokenizer
from flows.engine.cluster import dask_client
from flows.retry import RETRY_DELAY_SECONDS, STAGE_RETRIES, retry_if_transient
from flows.engine.tokenize import resolve_token_inputs, run_tokenize

#: Components by quality level, and their share before renormalising over those present.
#: Nemotron-CC (section 4) upweights high quality and synthetic data; null levels (documents
#: never classified) count as low.
DEFAULT_BLEND = {
    "high-quality": ({"quality_levels": ["high", "medium-high"], "synthetic_kinds": [None]}, 0.4),
    "medium-quality": ({"quality_levels": ["medium"], "synthetic_kinds": [None]}, 0.3),
    "low-quality": ({"quality_levels": ["medium-low", "low", None], "synthetic_kinds": [None]}, 0.1),
    "synthetic": ({"synthetic_kinds": "present"}, 0.2),
}


@dataclass(frozen=True)
class MixtureBuild:
    tokenizer: Path
    tokens_dir: Path
    mixture: Path
    report: Path
    stats: TokenStats


def _matches(group: dict, filters: dict) -> bool:
    levels, kinds = filters.get("quality_levels"), filters["synthetic_kinds"]
    kind_ok = group["synthetic_kind"] is not None if kinds == "present" else group["synthetic_kind"] in kinds
    return kind_ok and (levels is None or group["quality_level"] in levels)


def default_mixture(stats: TokenStats, shards_glob: str, *, seq_len: int, seed: int) -> dict:
    """A mixture over the quality levels present in `stats`, weights renormalised."""
    groups = stats.groups.to_list()
    components, weights = {}, {}
    for name, (filters, weight) in DEFAULT_BLEND.items():
        present = [g for g in groups if _matches(g, filters) and g["tokens"] > 0]
        if not present:
            continue
        spec: dict = {"paths": shards_glob}
        if filters.get("quality_levels"):
            spec["quality_levels"] = filters["quality_levels"]
        kinds = filters["synthetic_kinds"]
        spec["synthetic_kinds"] = sorted({g["synthetic_kind"] for g in present}) if kinds == "present" else kinds
        components[name] = spec
        weights[name] = weight
    if not components:
        raise ValueError(f"{shards_glob}: no tokens to build a mixture from")
    total = sum(weights.values())
    for name, spec in components.items():
        spec["weight"] = weights[name] / total
    return {"seq_len": seq_len, "seed": seed, "components": components}


@task(name="tokenizer", cache_policy=NO_CACHE)
def tokenizer_task(inputs: list[str], output: Path, vocab_size: int, max_docs: int) -> Path:
    if (output / "tokenizer.json").is_file():
        print(f"tokenizer: {output} exists, reused")
        return output
    tokenizer = train_tokenizer(iter_texts(inputs, max_docs), vocab_size=vocab_size, output_dir=output)
    print(f"tokenizer: trained {output} (vocab {tokenizer.vocab_size})")
    return output


@task(name="tokenize", cache_policy=NO_CACHE, retries=STAGE_RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS,
      retry_condition_fn=retry_if_transient)
def tokenize_task(inputs: list[str], tokenizer: Path, output: Path, scheduler: str | None, workers: int) -> TokenStats:
    config = TokenizeConfig(tokenizer=str(tokenizer.resolve()))
    with dask_client(scheduler, workers=workers) as client:
        return run_tokenize(client, resolve_token_inputs(inputs), output, config, progress=print)


@task(name="mixture", cache_policy=NO_CACHE)
def mixture_task(stats: TokenStats, tokens_dir: Path, mixture: Path, *, seq_len: int, seed: int,
                 budget: int | None) -> Path:
    from training.data import load_mixture, plan_mixture, write_mix_report

    mixture.write_text(yaml.safe_dump(default_mixture(stats, str(tokens_dir.resolve() / "*.parquet"),
                                                      seq_len=seq_len, seed=seed), sort_keys=False))
    report = write_mix_report(plan_mixture(load_mixture(mixture), budget), mixture.with_name("mixture-report"))
    create_markdown_artifact(report["markdown"].read_text(), key="token-mixture", description="Token mixture")
    print(report["markdown"].read_text())
    return report["markdown"]


@flow(name="build_mixture", log_prints=True)
def build_mixture(inputs: list[str], workdir: str | Path, *, vocab_size: int = 4096, seq_len: int = 1024,
                  seed: int = 1234, budget: int | None = None, tokenizer: str | None = None,
                  tokenizer_docs: int = 20_000, scheduler: str | None = None, workers: int = 2) -> MixtureBuild:
    """Tokenize `inputs` (curated and synthetic shard directories) under `workdir`/tokens and
    write `workdir`/mixture.yaml with its report; `tokenizer` reuses a local HF tokenizer."""
    workdir = Path(workdir)
    tokenizer_dir = Path(tokenizer) if tokenizer else tokenizer_task(inputs, workdir / "tokenizer", vocab_size,
                                                                    tokenizer_docs)
    stats = tokenize_task(inputs, tokenizer_dir, workdir / "tokens", scheduler, workers)
    mixture = workdir / "mixture.yaml"
    report = mixture_task(stats, workdir / "tokens", mixture, seq_len=seq_len, seed=seed, budget=budget)
    return MixtureBuild(tokenizer=tokenizer_dir, tokens_dir=workdir / "tokens", mixture=mixture, report=report,
                        stats=stats)
