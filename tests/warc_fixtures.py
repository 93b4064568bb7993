"""Helpers that write real documents as WARC records (imported by tests and fixtures)."""

from __future__ import annotations

import io
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter


def write_warc(path: Path, records: list[dict], *, gzip: bool = True) -> Path:
    """Write response records: dicts with url, payload (bytes), content_type (or None) and
    optionally more HTTP `headers` ([(name, value)])."""
    with open(path, "wb") as handle:
        writer = WARCWriter(handle, gzip=gzip)
        for record in records:
            headers = [("Content-Type", record["content_type"])] if record.get("content_type") else []
            headers += record.get("headers", [])
            http = StatusAndHeaders("200 OK", headers, protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(
                record["url"], "response", payload=io.BytesIO(record["payload"]), http_headers=http,
                warc_headers_dict={"WARC-Date": record.get("date", "2026-11-01T00:00:00Z")}))
    return path


def html_record(page: Path, url: str | None = None) -> dict:
    return {"url": url or f"https://debian-handbook.info/{page.parent.name}/{page.name}",
            "payload": page.read_bytes(), "content_type": "text/html; charset=utf-8"}
