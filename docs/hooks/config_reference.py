"""mkdocs hook: write docs/reference/configuration.md from the config models before each build,
so the configuration reference always matches the code (`flows.config.reference`)."""

from __future__ import annotations

from pathlib import Path

from flows.config.reference import config_reference_markdown

REFERENCE_PAGE = Path("reference") / "configuration.md"


def on_pre_build(config) -> None:
    """mkdocs calls this once per build, before it reads the pages under `docs_dir`."""
    page = Path(config["docs_dir"]) / REFERENCE_PAGE
    page.parent.mkdir(parents=True, exist_ok=True)
    text = config_reference_markdown()
    if not page.is_file() or page.read_text() != text:  # an unchanged page does not retrigger `mkdocs serve`
        page.write_text(text)
