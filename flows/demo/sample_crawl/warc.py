"""Writing pages as Common Crawl writes them: warcinfo, then request / response / metadata per page.

Byte-identical for the same plan and seed: record ids are uuid5 of (seed, file, page, type),
dates count up from a fixed crawl start, and warcio's per-record gzip members come from zlib,
whose gzip header has mtime 0.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import urlsplit

import xxhash
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from flows.demo.sample_crawl.pages import PlannedPage, Response
from flows.demo.sample_crawl.sources import SERVER_BY_SOURCE

CRAWL_NAME = "CC-SAMPLE-2026-44"
CRAWL_START = datetime(2026, 11, 1, tzinfo=timezone.utc)
FILE_NAME_TEMPLATE = "CC-SAMPLE-20261101000000-{index:05d}.warc.gz"
#: One fetch every few seconds per crawler thread, as in CC's fetch logs.
SECONDS_BETWEEN_FETCHES = 3
USER_AGENT = "CCBot/2.0 (https://commoncrawl.org/faq/)"
RECORD_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://ccforge.invalid/sample-corpus")
RECORDS_PER_PAGE = 3  # request, response, metadata


def write_warc_file(path: Path, pages: Iterable[tuple[int, PlannedPage, Response]], *, seed: int) -> int:
    """Write one WARC file atomically; `pages` are (global page index, plan, response). Returns records written."""
    temporary = path.with_name(path.name + ".tmp")
    records = 1
    with open(temporary, "wb") as handle:
        writer = WARCWriter(handle, gzip=True, warc_version="1.0")
        warcinfo_id = _record_id(seed, path.name, -1, "warcinfo")
        writer.write_record(_warcinfo_record(writer, path.name, warcinfo_id))
        for page_index, page, response in pages:
            for record in _page_records(writer, page_index, page, response, warcinfo_id=warcinfo_id, seed=seed):
                writer.write_record(record)
            records += RECORDS_PER_PAGE
    os.replace(temporary, path)
    return records


def _page_records(writer: WARCWriter, page_index: int, page: PlannedPage, response: Response, *,
                  warcinfo_id: str, seed: int) -> list:
    fetched_at = CRAWL_START + timedelta(days=seed % 7, seconds=page_index * SECONDS_BETWEEN_FETCHES)
    warc_date = fetched_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    ids = {kind: _record_id(seed, page.url, page_index, kind) for kind in ("request", "response", "metadata")}
    host = urlsplit(page.url).hostname
    common = {"WARC-Date": warc_date, "WARC-Warcinfo-ID": warcinfo_id, "WARC-IP-Address": _ip_address(host)}
    request = writer.create_warc_record(
        page.url, "request", payload=io.BytesIO(b""), http_headers=_request_headers(page.url),
        warc_headers_dict={"WARC-Type": "request", "WARC-Record-ID": ids["request"], **common,
                           "WARC-Target-URI": page.url})
    http_response = writer.create_warc_record(
        page.url, "response", payload=io.BytesIO(response.payload),
        http_headers=_response_headers(page, response, fetched_at),
        warc_headers_dict={"WARC-Type": "response", "WARC-Record-ID": ids["response"], **common,
                           "WARC-Concurrent-To": ids["request"], "WARC-Target-URI": page.url,
                           "WARC-Identified-Payload-Type": response.identified_type})
    fetch_fields = f"fetchTimeMs: {40 + xxhash.xxh32_intdigest(page.url.encode(), seed) % 900}\r\n"
    if response.charset:
        fetch_fields += f"charset-detected: {response.charset}\r\n"
    metadata = writer.create_warc_record(
        page.url, "metadata", payload=io.BytesIO(fetch_fields.encode()),
        warc_content_type="application/warc-fields",
        warc_headers_dict={"WARC-Type": "metadata", "WARC-Record-ID": ids["metadata"], "WARC-Date": warc_date,
                           "WARC-Warcinfo-ID": warcinfo_id, "WARC-Concurrent-To": ids["response"],
                           "WARC-Target-URI": page.url})
    return [request, http_response, metadata]


def _request_headers(url: str) -> StatusAndHeaders:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = [("User-Agent", USER_AGENT), ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
               ("Accept-Language", "en-US,en;q=0.5"), ("Host", parts.hostname), ("Connection", "Keep-Alive")]
    return StatusAndHeaders(f"GET {target} HTTP/1.1", headers, is_http_request=True)


def _response_headers(page: PlannedPage, response: Response, fetched_at: datetime) -> StatusAndHeaders:
    headers = [("Date", format_datetime(fetched_at, usegmt=True)), ("Server", SERVER_BY_SOURCE[page.doc.source]),
               ("Content-Type", response.content_type), ("Content-Length", str(len(response.payload))),
               ("Connection", "close")]
    return StatusAndHeaders("200 OK", headers, protocol="HTTP/1.1")


def _warcinfo_record(writer: WARCWriter, file_name: str, record_id: str):
    fields = {
        "isPartOf": CRAWL_NAME,
        "publisher": "ccforge sample-corpus",
        "description": "Sample crawl built offline from Debian documentation, man pages and licence files",
        "operator": "ccforge",
        "software": "ccforge flows.demo.sample_crawl (warcio)",
        "robots": "checked via crawler-commons",
        "format": "WARC File Format 1.0",
        "conformsTo": "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.0/",
    }
    body = "".join(f"{key}: {value}\r\n" for key, value in fields.items()).encode()
    return writer.create_warc_record(
        "", "warcinfo", payload=io.BytesIO(body), warc_content_type="application/warc-fields",
        warc_headers_dict={"WARC-Type": "warcinfo", "WARC-Date": CRAWL_START.strftime("%Y-%m-%dT%H:%M:%SZ"),
                           "WARC-Record-ID": record_id, "WARC-Filename": file_name})


def _record_id(seed: int, name: str, index: int, kind: str) -> str:
    return f"<urn:uuid:{uuid.uuid5(RECORD_ID_NAMESPACE, f'{seed}/{name}/{index}/{kind}')}>"


def _ip_address(host: str) -> str:
    """A stable public-looking address per host (CC records the address it fetched from)."""
    digest = xxhash.xxh32_intdigest(host.encode())
    return f"{100 + digest % 100}.{(digest >> 8) & 255}.{(digest >> 16) & 255}.{1 + (digest >> 24) % 254}"
