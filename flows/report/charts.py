"""The run report's charts: plain data in, PNG bytes out (matplotlib's Agg canvas, no pyplot state)."""

from __future__ import annotations

import io

import numpy as np
from matplotlib.figure import Figure

from curation.stage import StageStats
from flows.report.summary import Throughput

_IN, _OUT, _DROP = "#8da0cb", "#4c72b0", "#dd8452"


def _png(figure: Figure) -> bytes:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def funnel_chart(stages: list[StageStats]) -> bytes:
    """Documents and MB into and out of every stage, side by side."""
    figure = Figure(figsize=(10, 3.6))
    names = [s.name for s in stages]
    y = np.arange(len(names))
    for axes, unit, values in zip(figure.subplots(1, 2), ("documents", "MB"),
                                  (([s.docs_in for s in stages], [s.docs_out for s in stages]),
                                   ([s.bytes_in / 1e6 for s in stages], [s.bytes_out / 1e6 for s in stages]))):
        axes.barh(y - 0.2, values[0], height=0.4, color=_IN, label="in")
        axes.barh(y + 0.2, values[1], height=0.4, color=_OUT, label="out")
        axes.set(yticks=y, yticklabels=names, xlabel=unit, title=f"{unit} in and out per stage")
        axes.invert_yaxis()
        axes.legend(fontsize=8)
    return _png(figure)


def ranked_chart(counts: dict[str, int], *, title: str, xlabel: str) -> bytes:
    """Horizontal bars, largest first (languages, drop reasons)."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    figure = Figure(figsize=(8, 0.9 + 0.28 * len(ranked)))
    axes = figure.add_subplot()
    axes.barh([k for k, _ in ranked], [v for _, v in ranked], color=_OUT)
    axes.invert_yaxis()
    axes.set(title=title, xlabel=xlabel)
    return _png(figure)


def cluster_size_chart(sizes: dict[int, int]) -> bytes:
    """Near-duplicate clusters by their number of documents (the kept one included)."""
    figure = Figure(figsize=(8, 3.2))
    axes = figure.add_subplot()
    axes.bar(list(sizes), list(sizes.values()), color=_OUT, width=0.8)
    axes.set(title="fuzzy-dedup clusters by size", xlabel="documents in the cluster", ylabel="clusters")
    axes.xaxis.get_major_locator().set_params(integer=True)
    if max(sizes.values()) > 50 * min(sizes.values()):
        axes.set_yscale("log")
    return _png(figure)


def quality_chart(quality: dict) -> bytes:
    """Share of bytes per 0..19 bucket for each classifier and the ensemble, and per level."""
    names = list(quality["buckets"])
    figure = Figure(figsize=(10, 2.6 * (len(names) + 1)))
    axes = figure.subplots(len(names) + 1, 1, squeeze=False)[:, 0]
    for ax, name in zip(axes, names):
        n_bytes = np.asarray(quality["buckets"][name]["bytes"], dtype=float)
        ax.bar(np.arange(len(n_bytes)), 100 * n_bytes / max(n_bytes.sum(), 1.0), color=_OUT)
        ax.axhline(100 / len(n_bytes), color="gray", linestyle="--", linewidth=1)
        ax.set(title=f"{name}: bytes per quality bucket", ylabel="% of bytes", xticks=range(len(n_bytes)))
    levels = quality["levels"]
    total = max(sum(v["bytes"] for v in levels.values()), 1)
    axes[-1].bar(list(levels), [100 * v["bytes"] / total for v in levels.values()], color=_OUT)
    axes[-1].set(title="ensemble quality levels", ylabel="% of bytes")
    return _png(figure)


def synthetic_chart(tasks: dict[str, dict]) -> bytes:
    """Chunks sent per rephrase task: kept, and dropped by reason, stacked."""
    names = list(tasks)
    reasons = sorted({r for t in tasks.values() for r in t["dropped"]})
    figure = Figure(figsize=(8, 3.4))
    axes = figure.add_subplot()
    bottom = np.array([tasks[n]["kept"] for n in names], dtype=float)
    axes.bar(names, bottom, color=_OUT, label="kept")
    for reason in reasons:
        values = np.array([tasks[n]["dropped"].get(reason, 0) for n in names], dtype=float)
        axes.bar(names, values, bottom=bottom, label=f"dropped: {reason}")
        bottom += values
    axes.set(title="synthetic outputs per task", ylabel="chunks")
    axes.legend(fontsize=8)
    return _png(figure)


def training_chart(records: list[dict]) -> bytes:
    """Loss, learning rate and tokens/s against the step."""
    steps = [r["step"] for r in records]
    figure = Figure(figsize=(10, 7.5))
    loss, lr, speed = figure.subplots(3, 1, sharex=True)
    loss.plot(steps, [r["loss"] for r in records], color=_OUT)
    loss.set(title="training loss", ylabel="loss")
    lr.plot(steps, [r["lr"] for r in records], color=_DROP)
    lr.set(title="learning rate", ylabel="lr")
    speed.plot(steps, [r["tokens_per_s"] for r in records], color="#55a868")
    speed.set(title="throughput", ylabel="tokens/s", xlabel="step")
    for axes in (loss, lr, speed):
        axes.grid(alpha=0.3)
    return _png(figure)


def eval_chart(records: list[dict], series: dict[str, dict[str, list[tuple[int, float]]]]) -> bytes:
    """Held-out loss per set against the step, over the training loss (dashed), and bits per byte per set."""
    figure = Figure(figsize=(10, 6))
    loss, bpb = figure.subplots(2, 1, sharex=True)
    loss.plot([r["step"] for r in records], [r["loss"] for r in records], color="#999999", linestyle="--",
              label="training")
    for eval_set, metrics in series.items():
        for axes, metric in ((loss, "loss"), (bpb, "bpb")):
            if metric in metrics:
                steps, values = zip(*metrics[metric])
                axes.plot(steps, values, marker="o", label=eval_set)
    loss.set(title="held-out loss", ylabel="nats per token")
    bpb.set(title="held-out bits per byte", ylabel="bits per byte", xlabel="step")
    for axes in (loss, bpb):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    return _png(figure)


def throughput_chart(rows: list[Throughput]) -> bytes:
    """Documents/s, MB/s and tokens/s of every step that has them (log scales: they span decades)."""
    units = {"documents/s": lambda r: r.rate(r.docs), "MB/s": lambda r: r.rate(r.bytes, 1e6),
             "tokens/s": lambda r: r.rate(r.tokens)}
    panels = {unit: [(y, rate(r)) for y, r in enumerate(rows) if rate(r)] for unit, rate in units.items()}
    panels = {unit: rated for unit, rated in panels.items() if rated}
    figure = Figure(figsize=(3.5 + 3 * len(panels), 0.9 + 0.35 * len(rows)))
    axes_row = figure.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    for axes, (unit, rated) in zip(axes_row, panels.items()):
        axes.barh([y for y, _ in rated], [rate for _, rate in rated], color=_OUT)
        axes.set(title=unit, xscale="log")
        axes.grid(axis="x", alpha=0.3)
    axes_row[0].set(yticks=range(len(rows)), yticklabels=[r.name for r in rows])
    axes_row[0].invert_yaxis()
    return _png(figure)


#: metrics an ablation chart draws, at most (its table has them all)
ABLATION_CHART_METRICS = 4


def ablation_metrics(summary: dict) -> list[str]:
    """An ablation's metrics: evaluation first (bits per byte before loss, by set), the training loss last."""
    names = {key for variant in summary["summary"].values() for key in variant}
    evals = sorted((n for n in names if n.startswith("eval/")), key=lambda n: (not n.endswith("/bpb"), n))
    return evals + sorted(names - set(evals))


def ablation_chart(summary: dict) -> bytes:
    """Per metric: each variant's mean (bar), its seeds (dots) and their range (error bar)."""
    metrics = ablation_metrics(summary)[:ABLATION_CHART_METRICS]
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
