"""Shared fixtures: real documents from the machine's Debian documentation, written as WARC."""

from __future__ import annotations

import glob
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

HANDBOOK = "/usr/share/doc/debian-handbook/html"


@pytest.fixture(scope="session")
def handbook_pages() -> dict[str, list[Path]]:
    """Real HTML pages of the Debian handbook, by language directory (en-US, fr-FR, ...)."""
    pages: dict[str, list[Path]] = {}
    for path in sorted(glob.glob(f"{HANDBOOK}/*/*.html")):
        pages.setdefault(Path(path).parent.name, []).append(Path(path))
    assert pages, f"{HANDBOOK} is missing: apt-get install debian-handbook (.ci/run does)"
    return pages


def write_warc(path: Path, records: list[dict], *, gzip: bool = True) -> Path:
    """Write response records: dicts with url, payload (bytes), content_type (or None)."""
    with open(path, "wb") as handle:
        writer = WARCWriter(handle, gzip=gzip)
        for record in records:
            headers = [("Content-Type", record["content_type"])] if record.get("content_type") else []
            http = StatusAndHeaders("200 OK", headers, protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(
                record["url"], "response", payload=io.BytesIO(record["payload"]), http_headers=http,
                warc_headers_dict={"WARC-Date": record.get("date", "2026-11-01T00:00:00Z")}))
    return path


@pytest.fixture
def warc_factory(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str, records: list[dict], gzip: bool = True) -> Path:
        return write_warc(tmp_path / name, records, gzip=gzip)
    return make


def html_record(page: Path, url: str | None = None) -> dict:
    return {"url": url or f"https://debian-handbook.info/{page.parent.name}/{page.name}",
            "payload": page.read_bytes(), "content_type": "text/html; charset=utf-8"}
