"""An ablation's table and chart: each variant's evaluation metrics over its seeds (mean, spread),
as a report section (in `ccforge ablate`'s own report and in a pipeline's run report)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from flows.report.charts import _png
from flows.report.render import render_html, render_markdown, write_atomic
from flows.report.sections import Chart, Section, Table

#: metrics drawn in the chart, at most (the table has them all)
CHART_METRICS = 4


def metric_names(summary: dict) -> list[str]:
    """Evaluation metrics first (bits per byte before loss, by set), the training loss last."""
    names = {key for variant in summary["summary"].values() for key in variant}
    evals = sorted((n for n in names if n.startswith("eval/")), key=lambda n: (not n.endswith("/bpb"), n))
    return evals + sorted(names - set(evals))


def ablation_table(summary: dict) -> Table:
    metrics = metric_names(summary)
    rows = []
    for variant in summary["variants"]:
        stats = summary["summary"][variant]
        tokens = {run["tokens"] for run in summary["runs"] if run["variant"] == variant}
        cells = [f"{s['mean']:.4f} ± {s['std']:.4f}" if (s := stats.get(m)) else "-" for m in metrics]
        seeds = max((s["seeds"] for s in stats.values()), default=0)
        rows.append([variant, str(seeds), ", ".join(f"{t:,}" for t in sorted(tokens)), *cells])
    return Table(columns=["variant", "seeds", "tokens per run", *metrics], rows=rows,
                 align="lrr" + "r" * len(metrics))


def ablation_chart(summary: dict) -> bytes:
    """Per metric: each variant's mean (bar), its seeds (dots) and their range (error bar)."""
    metrics = metric_names(summary)[:CHART_METRICS]
    variants = summary["variants"]
    figure = Figure(figsize=(4 * len(metrics), 3.8))
    x = np.arange(len(variants))
    for axes, metric in zip(np.atleast_1d(figure.subplots(1, len(metrics))), metrics):
        stats = [summary["summary"][v].get(metric) for v in variants]
        means = np.array([s["mean"] if s else np.nan for s in stats])
        low = means - np.array([s["min"] if s else np.nan for s in stats])
        high = np.array([s["max"] if s else np.nan for s in stats]) - means
        axes.bar(x, means, color="#8da0cb", yerr=[low, high], capsize=4)
        for i, variant in enumerate(variants):
            seeds = [r["metrics"][metric] for r in summary["runs"] if r["variant"] == variant and metric in r["metrics"]]
            axes.plot([i] * len(seeds), seeds, "o", color="#4c72b0", markersize=4)
        finite = means[np.isfinite(means)]
        if finite.size:  # zoom on the differences: the bars would all look alike from zero
            spread = max(float(np.nanmax(means + high) - np.nanmin(means - low)), 1e-3)
            axes.set_ylim(float(np.nanmin(means - low)) - spread, float(np.nanmax(means + high)) + spread)
        axes.set_xticks(x, variants, rotation=20)
        axes.set(title=metric, ylabel="lower is better")
        axes.grid(alpha=0.3, axis="y")
    return _png(figure)


def ablation_section(summary: dict) -> Section:
    seeds = ", ".join(str(s) for s in summary["seeds"])
    blocks: list = [f"One proxy model per variant and seed (seeds {seeds}), with the same preset, schedule "
                    "and token budget, evaluated on the same held-out sets. Mean ± standard deviation over "
                    "the seeds; a difference smaller than the spread is no evidence.", ablation_table(summary)]
    blocks.append(Chart(name="ablation", alt="evaluation metrics per variant and seed", png=ablation_chart(summary)))
    return Section(title="Ablation", anchor="ablation", blocks=blocks)


def write_ablation_report(summary: dict, out: Path) -> dict[str, Path]:
    """OUT/report.md (chart under report-images/) and the self-contained OUT/report.html."""
    sections = [ablation_section(summary)]
    title = f"Ablation: {out}"
    markdown, images = render_markdown(sections, out, title=title)
    for relative, png in images.items():
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out / relative, png)
    paths = {"markdown": out / "report.md", "html": out / "report.html"}
    write_atomic(paths["markdown"], markdown.encode())
    write_atomic(paths["html"], render_html(sections, out, title=title).encode())
    return paths


def read_ablation(path: Path) -> dict | None:
    """An ablation.json, or None when there is none."""
    return json.loads(path.read_text()) if path.is_file() else None
