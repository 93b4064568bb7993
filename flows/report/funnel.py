"""The curation funnel as markdown: documents and bytes through every stage, why they left."""

from __future__ import annotations

from pathlib import Path

from curation.stage import StageStats


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:,.1f}"


def funnel_markdown(stages: list[StageStats]) -> str:
    lines = [
        "| stage | docs in | docs out | kept % | MB in | MB out | seconds | drops |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in stages:
        kept = 100.0 * s.docs_out / s.docs_in if s.docs_in else 0.0
        drops = [f"{reason} {count:,}" for reason, count in sorted(s.dropped.items(), key=lambda kv: -kv[1])]
        # and what a stage changed inside the documents it kept (spans and bytes cut)
        drops += [f"{name.replace('_', ' ')} {count:,}" for name, count in s.counters.items()]
        drops = ", ".join(drops) or "-"
        lines.append(f"| {s.name} | {s.docs_in:,} | {s.docs_out:,} | {kept:.1f} | {_mb(s.bytes_in)} | "
                     f"{_mb(s.bytes_out)} | {s.seconds:.1f} | {drops} |")
    return "\n".join(lines)


def languages_markdown(stats: StageStats, top: int = 30) -> str:
    total = sum(stats.languages.values()) or 1
    rows = sorted(stats.languages.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    lines = ["| language | docs | % |", "|---|---:|---:|"]
    lines += [f"| {lang} | {count:,} | {100 * count / total:.1f} |" for lang, count in rows]
    return "\n".join(lines)


def write_curation_report(stages: list[StageStats], path: Path) -> None:
    parts = ["# Curation report", "", "## Funnel", "", funnel_markdown(stages), ""]
    with_languages = [s for s in stages if s.languages]
    if with_languages:
        parts += [f"## Languages (after {with_languages[-1].name})", "",
                  languages_markdown(with_languages[-1]), ""]
    errors = [e for s in stages for e in s.errors]
    if errors:
        parts += ["## Input files that could not be read whole", ""] + [f"- {e}" for e in errors] + [""]
    path.write_text("\n".join(parts))
