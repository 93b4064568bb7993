"""The `ablate` Prefect flow: one proxy model per mixture variant and seed, compared on the same
evaluation sets (the DCLM / Nemotron-CC way of telling whether a curation choice helps).

    OUT/mixtures/VARIANT.yaml          the mixture each variant trains on
    OUT/runs/VARIANT/seed-N/           train.yaml, metrics.jsonl, checkpoints/ (a `pretrain` subflow)
    OUT/ablation.json                  every run's final metrics, and per variant their mean and spread
    OUT/report.md, OUT/report.html     the table and the chart (report-images/ablation.png)

A pipeline's run report shows WORKDIR/ablation/ablation.json as its Ablation section.

Runs go through `pretrain`, which always resumes: a rerun skips finished runs and continues an
interrupted one from its newest checkpoint.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import yaml
from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.config.ablate import AblationConfig, run_train_mapping, variant_mixture
from flows.pretrain import pretrain
from flows.report.render import write_report
from flows.report.sections import ablation_section
from flows.report.summary import last_evaluation, read_metrics

ABLATION_FILE = "ablation.json"


@dataclass(frozen=True)
class AblationResult:
    out: Path
    summary: dict  # what ablation.json holds
    report: Path  # OUT/report.html


def final_metrics(run_dir: Path) -> dict[str, float]:
    """The run's final training loss and the evaluation metrics of its last evaluation
    (`eval/SET/METRIC` keys of metrics.jsonl)."""
    records = read_metrics(run_dir / "metrics.jsonl")
    return {"train/loss": records[-1]["loss"], **last_evaluation(records)}


def summarise(runs: list[dict], variants: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """Per variant and metric: mean, sample standard deviation, min, max and the number of seeds."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for variant in variants:
        metrics: dict[str, list[float]] = {}
        for run in (r for r in runs if r["variant"] == variant):
            for key, value in run["metrics"].items():
                metrics.setdefault(key, []).append(value)
        summary[variant] = {key: {"mean": statistics.fmean(values),
                                  "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                                  "min": min(values), "max": max(values), "seeds": len(values)}
                            for key, values in metrics.items()}
    return summary


@flow(name="ablate", log_prints=True, validate_parameters=False)  # the config arrives validated
def ablate(config: AblationConfig) -> AblationResult:
    out = Path(config.out)
    (out / "mixtures").mkdir(parents=True, exist_ok=True)
    runs = []
    for variant in config.variants:
        mixture_path = out / "mixtures" / f"{variant}.yaml"
        mixture_path.write_text(yaml.safe_dump(variant_mixture(config, variant), sort_keys=False))
        for seed in config.seeds:
            run_dir = out / "runs" / variant / f"seed-{seed}"
            run_dir.mkdir(parents=True, exist_ok=True)
            train_yaml = run_dir / "train.yaml"
            train_yaml.write_text(yaml.safe_dump(run_train_mapping(config, mixture_path, seed, run_dir),
                                                 sort_keys=False))
            print(f"ablation: {variant}, seed {seed}")
            result = pretrain(str(train_yaml), nproc=config.nproc)
            runs.append({"variant": variant, "seed": seed, "run_dir": str(run_dir), "tokens": result.tokens,
                         "metrics": final_metrics(run_dir)})
    summary = {"variants": list(config.variants), "seeds": config.seeds, "runs": runs,
               "summary": summarise(runs, list(config.variants))}
    (out / ABLATION_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    report = write_report([ablation_section(summary)], out, title=f"Ablation: {out}")
    table = "\n".join(line for line in report["markdown"].read_text().splitlines() if not line.startswith("!["))
    create_markdown_artifact(table, key="ablation", description=f"Ablation {out}")
    print(report["markdown"].read_text())
    return AblationResult(out=out, summary=summary, report=report["html"])
