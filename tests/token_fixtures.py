"""Real documents for tokenizer and mixture tests: Debian handbook and PostgreSQL pages as text chunks."""

from __future__ import annotations

import glob
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from flows.demo.sample_crawl.pages import visible_lines

HANDBOOK_EN = "/usr/share/doc/debian-handbook/html/en-US"
POSTGRES = "/usr/share/doc/postgresql-doc-15/html"
QUALITY_LEVELS = ("high", "medium", "low")


def html_text(path: str | Path) -> str:
    """Visible text of an HTML page, one line per block."""
    return "\n".join(visible_lines(Path(path).read_text(errors="replace")))


def chunks(text: str, max_chars: int) -> list[str]:
    """Split at line ends into pieces of at most about `max_chars` (documents of similar size)."""
    out, current = [], ""
    for line in text.splitlines():
        if current and len(current) + len(line) > max_chars:
            out.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line[:max_chars]
    return out + ([current] if current else [])


def documents(pattern: str, *, limit: int, max_chars: int = 1500) -> list[str]:
    paths = sorted(glob.glob(pattern))[:limit]
    assert paths, f"{pattern} matches nothing: apt-get install debian-handbook postgresql-doc-15 (.ci/run does)"
    return [c for p in paths for c in chunks(html_text(p), max_chars) if len(c) > 40]


def curated_table(texts: list[str], *, source: str, synthetic_every: int = 0) -> pa.Table:
    """A curated-schema table: ids, quality levels by hash, every n-th document marked synthetic."""
    ids = [xxhash.xxh3_64_hexdigest(f"{source}:{i}".encode()) for i in range(len(texts))]
    levels = [QUALITY_LEVELS[int(i, 16) % 3] for i in ids]
    kinds = [("diverse_qa" if synthetic_every and k % synthetic_every == 0 else None) for k in range(len(texts))]
    return pa.table({"id": ids, "text": texts, "source": [source] * len(texts), "quality_level": levels,
                     "synthetic_kind": pa.array(kinds, pa.string())})


def write_curated(out_dir: Path, *, handbook_pages: int = 60, postgres_pages: int = 60, files: int = 4) -> list[Path]:
    """Curated Parquet shards of real text: `files` shards, each a slice of both sources."""
    out_dir.mkdir(parents=True, exist_ok=True)
    handbook = curated_table(documents(f"{HANDBOOK_EN}/*.html", limit=handbook_pages), source="handbook")
    postgres = curated_table(documents(f"{POSTGRES}/*.html", limit=postgres_pages), source="postgres",
                             synthetic_every=3)
    paths = []
    for k in range(files):
        part = pa.concat_tables([t.slice(k * t.num_rows // files, (k + 1) * t.num_rows // files - k * t.num_rows // files)
                                 for t in (handbook, postgres)])
        paths.append(out_dir / f"part-{k}.parquet")
        pq.write_table(part, paths[-1])
    return paths
