"""The run report written twice: `report.md` with its charts in `report-images/`, and
`report.html`, one self-contained page (charts as base64 PNG data URIs, inline CSS, no scripts)."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

from flows.report.sections import Chart, Section, Table, build_sections
from flows.report.summary import read_run

IMAGES_DIR = "report-images"

_CSS = """
body { font: 15px/1.45 system-ui, sans-serif; color: #222; max-width: 1100px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: .25em .6em; vertical-align: top; }
th { background: #f3f5f9; } td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; display: block; margin: .8em 0; }
td:first-child { white-space: nowrap; } nav ul { columns: 2; } .meta { color: #666; }
"""


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> str:
    lines = ["| " + " | ".join(_md_cell(c) for c in table.columns) + " |",
             "|" + "|".join("---:" if a == "r" else "---" for a in table.align) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def render_markdown(sections: list[Section], workdir: Path, *, title: str | None = None) -> tuple[str, dict[str, bytes]]:
    """The Markdown text and the image files it links to (paths relative to the report)."""
    parts, images = [f"# {title or f'Run report: {workdir}'}", ""], {}
    for section in sections:
        parts += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Table):
                parts.append(_md_table(block))
            elif isinstance(block, Chart):
                path = f"{IMAGES_DIR}/{block.name}.png"
                images[path] = block.png
                parts.append(f"![{block.alt}]({path})")
            elif isinstance(block, list):
                parts.append("\n".join(f"- {item}" for item in block))
            else:
                parts.append(block)
            parts.append("")
    return "\n".join(parts), images


def _html_table(table: Table) -> str:
    def cells(tag: str, values: list[str]) -> str:
        return "".join(f'<{tag} class="{a}">{html.escape(v)}</{tag}>' for a, v in zip(table.align, values))

    rows = "\n".join(f"<tr>{cells('td', row)}</tr>" for row in table.rows)
    return f"<table>\n<thead><tr>{cells('th', table.columns)}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>"


def _html_block(block: Table | Chart | str | list[str]) -> str:
    if isinstance(block, Table):
        return _html_table(block)
    if isinstance(block, Chart):
        data = base64.b64encode(block.png).decode("ascii")
        return f'<img src="data:image/png;base64,{data}" alt="{html.escape(block.alt)}">'
    if isinstance(block, list):
        return "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in block) + "</ul>"
    return f"<p>{html.escape(block)}</p>"


def render_html(sections: list[Section], workdir: Path, *, title: str | None = None) -> str:
    title = html.escape(title or f"Run report: {workdir}")
    toc = "".join(f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>' for s in sections)
    body = "\n".join(f'<section id="{s.anchor}">\n<h2>{html.escape(s.title)}</h2>\n'
                     + "\n".join(_html_block(b) for b in s.blocks) + "\n</section>" for s in sections)
    empty = "" if sections else '<p class="meta">Nothing to report: no stats files were found here.</p>'
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n'
            f"<style>{_CSS}</style>\n</head>\n<body>\n<h1>{title}</h1>\n{empty}<nav><ul>{toc}</ul></nav>\n"
            f"{body}\n</body>\n</html>\n")


def _write_atomic(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_bytes(data)
    os.replace(temp, path)


def write_run_report(workdir: str | Path, *, top_languages: int = 20) -> dict[str, Path]:
    """Write WORKDIR/report.md (+ report-images/*.png) and WORKDIR/report.html; returns their paths."""
    workdir = Path(workdir)
    return write_report(build_sections(read_run(workdir), top_languages=top_languages), workdir)


def write_report(sections: list[Section], workdir: Path, *, title: str | None = None) -> dict[str, Path]:
    """`sections` as DIR/report.md (+ report-images/*.png) and DIR/report.html; returns their paths."""
    markdown, images = render_markdown(sections, workdir, title=title)
    images_dir = workdir / IMAGES_DIR
    images_dir.mkdir(exist_ok=True)
    for stale in images_dir.glob("*.png"):  # a chart whose data is gone now must not linger
        stale.unlink()
    for relative, png in images.items():
        _write_atomic(workdir / relative, png)
    paths = {"markdown": workdir / "report.md", "html": workdir / "report.html", "images": images_dir}
    _write_atomic(paths["markdown"], markdown.encode())
    _write_atomic(paths["html"], render_html(sections, workdir, title=title).encode())
    return paths


def publish_report_artifact(markdown_path: Path, key: str = "run-report") -> None:
    """report.md as a Prefect markdown artifact, without its charts (the UI cannot load local files).

    Published by a small flow run of its own (a subflow when called inside a flow): Prefect is
    imported only here, and artifacts made outside a run are deprecated."""
    from prefect import flow
    from prefect.artifacts import create_markdown_artifact

    text = "\n".join(line for line in markdown_path.read_text().splitlines() if not line.startswith("!["))

    @flow(name="run-report")
    def publish() -> None:
        create_markdown_artifact(text, key=key, description=f"Run report of {markdown_path.parent}")

    publish()
