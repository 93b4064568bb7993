"""Shared fixtures: real documents from the machine's Debian documentation, written as WARC."""

from __future__ import annotations

import glob
from collections.abc import Callable
from pathlib import Path

import pytest
from warc_fixtures import write_warc

HANDBOOK = "/usr/share/doc/debian-handbook/html"


@pytest.fixture(scope="session")
def handbook_pages() -> dict[str, list[Path]]:
    """Real HTML pages of the Debian handbook, by language directory (en-US, fr-FR, ...)."""
    pages: dict[str, list[Path]] = {}
    for path in sorted(glob.glob(f"{HANDBOOK}/*/*.html")):
        pages.setdefault(Path(path).parent.name, []).append(Path(path))
    assert pages, f"{HANDBOOK} is missing: apt-get install debian-handbook (.ci/run does)"
    return pages


@pytest.fixture
def warc_factory(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str, records: list[dict], gzip: bool = True) -> Path:
        return write_warc(tmp_path / name, records, gzip=gzip)
    return make
