"""The run report's content: a `RunSummary` turned into sections of tables, charts and text.

Each section appears only when its data is in the workdir. `flows.report.render` writes the
sections as Markdown (charts as files) and as one self-contained HTML page.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flows.report import charts
from flows.report.summary import FUZZY_DEDUP, HEURISTICS, RunSummary, eval_series, training_throughput


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list[str]]
    align: str  # one letter per column: l(eft) or r(ight)


@dataclass(frozen=True)
class Chart:
    name: str  # file stem under report-images/
    alt: str
    png: bytes


@dataclass(frozen=True)
class Section:
    title: str
    anchor: str
    blocks: list[Table | Chart | str | list[str]] = field(default_factory=list)  # a list is a bullet list


def _n(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:,.1f}"


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}" if whole else "-"


def _rate(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def funnel_section(summary: RunSummary) -> Section:
    rows = [[s.name, _n(s.docs_in), _n(s.docs_out), _pct(s.docs_out, s.docs_in), _mb(s.bytes_in), _mb(s.bytes_out),
             f"{s.seconds:.1f}", ", ".join(f"{r} {c:,}" for r, c in sorted(s.dropped.items(), key=lambda kv: -kv[1]))
             or "-"] for s in summary.stages]
    table = Table(["stage", "docs in", "docs out", "kept %", "MB in", "MB out", "seconds", "drops"], rows, "lrrrrrrl")
    return Section("Curation funnel", "funnel", [f"Stages in {summary.curation_dir}, in the order they ran.", table,
                                                 Chart("funnel", "documents and MB in and out per stage",
                                                       charts.funnel_chart(summary.stages))])


def languages_section(summary: RunSummary, top: int) -> Section | None:
    stage = next((s for s in reversed(summary.stages) if s.languages), None)
    if stage is None:
        return None
    total = sum(stage.languages.values())
    ranked = sorted(stage.languages.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    rows = [[lang, _n(count), _pct(count, total)] for lang, count in ranked]
    return Section("Languages", "languages", [
        f"Documents out of {stage.name}: the {len(ranked)} most frequent of {len(stage.languages)} languages.",
        Table(["language", "docs", "%"], rows, "lrr"),
        Chart("languages", "documents per language",
              charts.ranked_chart(dict(ranked), title=f"languages after {stage.name}", xlabel="documents"))])


def heuristics_section(summary: RunSummary) -> Section | None:
    stage = summary.stage(HEURISTICS)
    if stage is None or not stage.dropped:
        return None
    ranked = sorted(stage.dropped.items(), key=lambda kv: (-kv[1], kv[0]))
    rows = [[reason, _n(count), _pct(count, stage.docs_in)] for reason, count in ranked]
    return Section("Heuristic drop reasons", "heuristics", [
        f"{sum(stage.dropped.values()):,} of {stage.docs_in:,} documents dropped; each for the first rule it failed.",
        Table(["reason", "docs", "% of input"], rows, "lrr"),
        Chart("heuristics", "documents dropped per heuristic rule",
              charts.ranked_chart(dict(ranked), title="heuristic drop reasons", xlabel="documents"))])


def fuzzy_section(summary: RunSummary) -> Section | None:
    if not summary.cluster_sizes and not summary.fuzzy_clusters:
        return None
    blocks: list = []
    if summary.fuzzy_clusters:
        blocks.append(Table(["count", "value"], [[k.replace("_", " "), _n(v)] for k, v in summary.fuzzy_clusters.items()],
                            "lr"))
    if summary.cluster_sizes:
        rows = [[str(size), _n(n), _n(n * (size - 1))] for size, n in summary.cluster_sizes.items()]
        blocks += [Table(["cluster size", "clusters", "docs removed"], rows, "rrr"),
                   Chart("fuzzy-clusters", "near-duplicate clusters by size",
                         charts.cluster_size_chart(summary.cluster_sizes))]
    return Section("Near-duplicate clusters", "fuzzy-dedup", [f"From {FUZZY_DEDUP}/duplicates.parquet and "
                                                             "clusters.json: each cluster keeps one document."] + blocks)


def quality_section(summary: RunSummary) -> Section | None:
    quality = summary.quality
    if not quality:
        return None
    levels = quality["levels"]
    total_bytes = sum(v["bytes"] for v in levels.values())
    level_rows = [[lv, _n(v["docs"]), _mb(v["bytes"]), _pct(v["bytes"], total_bytes)] for lv, v in levels.items()]
    names = list(quality["buckets"])
    buckets = len(quality["buckets"][names[0]]["docs"])
    bucket_rows = [[str(b)] + [_n(quality["buckets"][n]["docs"][b]) for n in names] for b in range(buckets)]
    return Section("Quality buckets", "quality", [
        Table(["level", "docs", "MB", "% of bytes"], level_rows, "lrrr"),
        "Documents per byte-weighted percentile bucket (0 lowest, 19 highest), per classifier and for the ensemble:",
        Table(["bucket"] + names, bucket_rows, "r" * (len(names) + 1)),
        Chart("quality", "bytes per quality bucket and level", charts.quality_chart(quality))])


def synthetic_section(summary: RunSummary) -> Section | None:
    report = summary.synthetic
    if not report:
        return None
    tasks = report["tasks"]
    rows = [[task, _n(c["chunks"]), _n(c["kept"]), ", ".join(f"{r} {n:,}" for r, n in sorted(
        c["dropped"].items(), key=lambda kv: -kv[1])) or "-"] for task, c in tasks.items()]
    facts = [f"{key.replace('_', ' ')}: {report[key]:,}" for key in
             ("documents", "rephrased", "prompt_tokens", "generated_tokens", "attempts") if key in report]
    blocks: list = [facts, Table(["task (synthetic_kind)", "chunks", "kept", "drops"], rows, "lrrl")]
    if tasks:
        blocks.append(Chart("synthetic", "synthetic outputs per task", charts.synthetic_chart(tasks)))
    return Section("Synthetic data", "synthetic", blocks)


def mixture_section(summary: RunSummary) -> Section | None:
    blocks: list = []
    if summary.tokens:
        groups = summary.tokens["groups"]
        blocks += [f"{summary.tokens['docs']:,} documents, {summary.tokens['tokens']:,} tokens in data/tokens:",
                   Table(["source", "quality level", "synthetic kind", "docs", "tokens"],
                         [[str(g["source"]), str(g["quality_level"] or "-"), str(g["synthetic_kind"] or "-"),
                           _n(g["docs"]), _n(g["tokens"])] for g in groups], "lllrr")]
    if summary.mixture:
        mix = summary.mixture
        rows = [[c["name"], c["filters"], _n(c["docs"]), _n(c["tokens_available"]), _n(c["tokens_drawn"]),
                 f"{c['epochs']:.2f}", format(c["max_epochs"], "g") if c["max_epochs"] else "-"]
                for c in mix["components"]]
        phases = [[p["name"], _n(p["start"]), _n(p["tokens"]) if p["tokens"] is not None else "to the end",
                   ", ".join(f"{c['name']} {c['weight']:.3f}" for c in p["components"])] for p in mix["phases"]]
        blocks += [f"Mixture: {mix['total_tokens'] or 0:,} tokens, seq_len {mix['seq_len']}, seed {mix['seed']}.",
                   Table(["component", "filters", "docs", "tokens available", "tokens drawn", "epochs", "max epochs"],
                         rows, "llrrrrr"),
                   Table(["phase", "start", "tokens", "weights"], phases, "lrrl")]
        if summary.mixture_png:  # the chart `ccforge mix` drew beside report.json
            blocks.append(Chart("mixture", "tokens drawn per phase and epochs per component", summary.mixture_png))
    return Section("Tokens and mixture", "mixture", blocks) if blocks else None


def training_section(summary: RunSummary) -> Section | None:
    records = summary.training
    blocks: list = []
    if records:
        losses = [r["loss"] for r in records]
        speed = training_throughput(records)
        facts = [("steps", _n(records[-1]["step"])), ("tokens", _n(records[-1]["tokens"])),
                 ("first loss", f"{losses[0]:.4f}"), ("final loss", f"{losses[-1]:.4f}"),
                 ("lowest loss", f"{min(losses):.4f}"), ("skipped steps", _n(records[-1].get("skipped_steps", 0))),
                 ("tokens/s (after step 1)", _rate(speed.rate(speed.tokens) if speed else None, 0))]
        if records[-1].get("mfu") is not None:
            facts.append(("MFU (last step)", f"{records[-1]['mfu']:.3f}"))
        blocks += [Table(["metric", "value"], [list(f) for f in facts], "lr"),
                   Chart("training", "training loss, learning rate and tokens/s", charts.training_chart(records))]
        blocks += _eval_blocks(records)
    if summary.model_hf:
        hf = summary.model_hf
        blocks.append(f"Exported model: {hf['path']} (model_type {hf['model_type']}, "
                      f"{_mb(hf['weight_bytes'])} MB of safetensors).")
    return Section("Training", "training", blocks) if blocks else None


def _value_at(values: list[tuple[int, float]], index: int) -> str:
    return f"{values[index][1]:.4f}" if values else "-"


def _eval_blocks(records: list[dict]) -> list:
    """The held-out evaluation: each set's first and last loss and bits per byte, and their curves."""
    series = eval_series(records)
    if not series:
        return []
    rows = [[name, *(_value_at(m.get(metric, []), index) for metric in ("loss", "bpb") for index in (0, -1))]
            for name, m in series.items()]
    steps = sorted({step for m in series.values() for values in m.values() for step, _ in values})
    return [f"Held-out evaluation, {len(steps)} times from step {steps[0]} to step {steps[-1]}: loss in nats per "
            "token, and bits per byte of the UTF-8 text (comparable across tokenizers).",
            Table(["set", "first loss", "final loss", "first bits per byte", "final bits per byte"], rows, "lrrrr"),
            Chart("evaluation", "held-out loss and bits per byte per set", charts.eval_chart(records, series))]


def throughput_section(summary: RunSummary) -> Section | None:
    rows = summary.throughput()
    if not rows:
        return None
    table = [[r.name, f"{r.seconds:,.1f}", _n(r.docs) if r.docs is not None else "-",
              _mb(r.bytes) if r.bytes is not None else "-", _rate(r.rate(r.docs)), _rate(r.rate(r.bytes, 1e6), 2),
              _rate(r.rate(r.tokens), 0)] for r in rows]
    blocks: list = ["Input documents and bytes over each step's wall time (extract: WARC payload bytes; "
                    "training: steps after the first).",
                    Table(["step", "seconds", "docs", "MB", "docs/s", "MB/s", "tokens/s"], table, "lrrrrrr")]
    if any(r.rate(r.docs) or r.rate(r.tokens) for r in rows):
        blocks.append(Chart("throughput", "documents/s, MB/s and tokens/s per step", charts.throughput_chart(rows)))
    return Section("Throughput", "throughput", blocks)


def errors_section(summary: RunSummary) -> Section | None:
    errors = [e for s in summary.stages for e in s.errors] + (summary.tokens or {}).get("errors", [])
    return Section("Input files that could not be read whole", "errors", [errors]) if errors else None


def ablation_table(summary: dict) -> Table:
    metrics = charts.ablation_metrics(summary)
    rows = []
    for variant in summary["variants"]:
        stats = summary["summary"][variant]
        tokens = {run["tokens"] for run in summary["runs"] if run["variant"] == variant}
        cells = [f"{s['mean']:.4f} ± {s['std']:.4f}" if (s := stats.get(m)) else "-" for m in metrics]
        seeds = max((s["seeds"] for s in stats.values()), default=0)
        rows.append([variant, str(seeds), ", ".join(f"{t:,}" for t in sorted(tokens)), *cells])
    return Table(columns=["variant", "seeds", "tokens per run", *metrics], rows=rows,
                 align="lrr" + "r" * len(metrics))


def ablation_section(summary: dict) -> Section:
    seeds = ", ".join(str(s) for s in summary["seeds"])
    blocks: list = [f"One proxy model per variant and seed (seeds {seeds}), with the same preset, schedule "
                    "and token budget, evaluated on the same held-out sets. Mean ± standard deviation over "
                    "the seeds; a difference smaller than the spread is no evidence.", ablation_table(summary)]
    blocks.append(Chart(name="ablation", alt="evaluation metrics per variant and seed", png=charts.ablation_chart(summary)))
    return Section(title="Ablation", anchor="ablation", blocks=blocks)


def build_sections(summary: RunSummary, *, top_languages: int = 20) -> list[Section]:
    """Every section whose data the workdir holds, in pipeline order."""
    sections = [funnel_section(summary) if summary.stages else None, languages_section(summary, top_languages),
                heuristics_section(summary), fuzzy_section(summary), quality_section(summary),
                synthetic_section(summary), mixture_section(summary), training_section(summary),
                ablation_section(summary.ablation) if summary.ablation else None,
                throughput_section(summary), errors_section(summary)]
    return [s for s in sections if s is not None]
