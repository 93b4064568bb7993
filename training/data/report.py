"""The `ccforge mix` report: tokens available, tokens drawn and epochs, as Markdown, JSON and PNG."""

from __future__ import annotations

import json
from pathlib import Path

from training.data.mixture import MixturePlan


def plan_summary(plan: MixturePlan) -> dict:
    """Everything the report shows, as plain data (also written as JSON)."""
    epochs = plan.epochs()
    return {
        "seq_len": plan.config.seq_len, "seed": plan.config.seed, "total_tokens": plan.total_tokens,
        "components": [{"name": c.name, "shards": len(c.shards), "filters": c.row_filter.describe(),
                        "docs": c.docs, "tokens_available": c.tokens, "max_epochs": c.max_epochs,
                        "tokens_drawn": round(sum(plan.drawn(p, c.name) for p in plan.phases)),
                        "epochs": epochs[c.name][-1]} for c in plan.components],
        "phases": [{"name": p.name, "start": p.start, "tokens": p.tokens, "seq_len": p.seq_len,
                    "micro_batch_size": p.micro_batch_size,
                    "components": [{"name": c.name, "weight": p.weights[c.name],
                                    "tokens_drawn": round(plan.drawn(p, c.name)),
                                    "epochs_in_phase": plan.drawn(p, c.name) / c.tokens,
                                    "epochs_cumulative": epochs[c.name][i]} for c in plan.components]}
                   for i, p in enumerate(plan.phases)],
    }


def mix_markdown(summary: dict) -> str:
    lines = [f"# Mixture: {summary['total_tokens'] or 0:,} tokens, seq_len {summary['seq_len']}, seed {summary['seed']}",
             "", "| component | shards | filters | docs | tokens available | tokens drawn | epochs | max_epochs |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for c in summary["components"]:
        lines.append(f"| {c['name']} | {c['shards']} | {c['filters']} | {c['docs']:,} | {c['tokens_available']:,} "
                     f"| {c['tokens_drawn']:,} | {c['epochs']:.2f} | {format(c['max_epochs'], 'g') if c['max_epochs'] else '-'} |")
    for phase in summary["phases"]:
        end = "end" if phase["tokens"] is None else f"{phase['start'] + phase['tokens']:,}"
        shape = f"seq_len {phase['seq_len']}" + (f", micro_batch_size {phase['micro_batch_size']}"
                                                 if phase["micro_batch_size"] else "")
        lines += ["", f"## Phase {phase['name']}: tokens {phase['start']:,} to {end}, {shape}", "",
                  "| component | weight | tokens drawn | epochs in phase | epochs so far |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {c['name']} | {c['weight']:.3f} | {c['tokens_drawn']:,} | {c['epochs_in_phase']:.2f} "
                  f"| {c['epochs_cumulative']:.2f} |" for c in phase["components"]]
    return "\n".join(lines) + "\n"


def mix_chart(summary: dict, path: Path) -> None:
    """Tokens drawn per phase, stacked by component; and each component's epochs against max_epochs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    phases = [p["name"] for p in summary["phases"]]
    bottom = [0.0] * len(phases)
    for i, c in enumerate(summary["components"]):
        drawn = [p["components"][i]["tokens_drawn"] / 1e6 for p in summary["phases"]]
        left.bar(phases, drawn, bottom=bottom, label=c["name"])
        bottom = [b + d for b, d in zip(bottom, drawn)]
    left.set(title="tokens drawn per phase", ylabel="million tokens")
    left.legend(fontsize=8)
    names = [c["name"] for c in summary["components"]]
    right.bar(names, [c["epochs"] for c in summary["components"]], color="tab:gray")
    for x, c in enumerate(summary["components"]):
        if c["max_epochs"]:
            right.hlines(c["max_epochs"], x - 0.4, x + 0.4, colors="tab:red", label="max_epochs" if x == 0 else None)
    right.set(title="effective epochs per component", ylabel="epochs")
    right.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_mix_report(plan: MixturePlan, output_dir: str | Path) -> dict[str, Path]:
    """Write report.md, report.json and report.png under `output_dir`; returns their paths."""

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    summary = plan_summary(plan)
    paths = {"markdown": output_dir / "report.md", "json": output_dir / "report.json", "chart": output_dir / "report.png"}
    paths["markdown"].write_text(mix_markdown(summary))
    paths["json"].write_text(json.dumps(summary, indent=2) + "\n")
    mix_chart(summary, paths["chart"])
    return paths
