"""`build_sample_corpus`: plan the pages, then stream them into gzipped WARC files, counting the mix."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from flows.demo.sample_crawl.packages import ensure_doc_packages
from flows.demo.sample_crawl.pages import PlannedPage, Response, render
from flows.demo.sample_crawl.plan import plan_pages
from flows.demo.sample_crawl.warc import FILE_NAME_TEMPLATE, write_warc_file

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class SampleCorpusReport:
    """What was written: files, WARC records, and the response mix by source, variant, language, type."""

    files: list[Path] = field(default_factory=list)
    responses: int = 0
    warc_records: int = 0
    total_bytes: int = 0
    responses_by_source: dict[str, int] = field(default_factory=dict)
    responses_by_variant: dict[str, int] = field(default_factory=dict)
    responses_by_language: dict[str, int] = field(default_factory=dict)
    responses_by_content_type: dict[str, int] = field(default_factory=dict)
    installed_packages: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {**self.__dict__, "files": [str(path) for path in self.files]}

    def summary(self) -> str:
        """A few printable lines: where the files are and what mix of pages they hold."""
        def top(counts: dict[str, int], n: int = 12) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:n])

        where = self.files[0].parent if self.files else "-"
        return "\n".join([
            f"sample crawl: {self.responses} pages in {len(self.files)} WARC files "
            f"({self.warc_records} records, {self.total_bytes / 1e6:.1f} MB) in {where}",
            f"  sources:   {top(self.responses_by_source)}",
            f"  variants:  {top(self.responses_by_variant)}",
            f"  languages: {len(self.responses_by_language)} ({top(self.responses_by_language)}, ...)",
        ])


def build_sample_corpus(out_dir: str | Path, *, max_records: int = 6000, num_files: int = 8, seed: int = 0,
                        install_missing: bool = True) -> SampleCorpusReport:
    """Write `num_files` Common Crawl-like WARC files with up to `max_records` responses into `out_dir`."""
    if num_files < 1:
        raise ValueError(f"num_files must be at least 1; got {num_files}")
    installed = ensure_doc_packages() if install_missing else []
    pages = plan_pages(max_records=max_records, seed=seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {name: Counter() for name in ("source", "variant", "language", "content_type")}
    report = SampleCorpusReport(installed_packages=installed, responses=len(pages))
    for file_index in range(num_files):
        start, stop = file_index * len(pages) // num_files, (file_index + 1) * len(pages) // num_files
        path = out_dir / FILE_NAME_TEMPLATE.format(index=file_index)
        report.warc_records += write_warc_file(path, _rendered(pages, start, stop, counts), seed=seed)
        report.files.append(path)
        report.total_bytes += path.stat().st_size
    for name, counter in counts.items():
        setattr(report, f"responses_by_{name}", dict(sorted(counter.items())))
    log.info("sample corpus: %d responses in %d files, %.1f MB", report.responses, num_files, report.total_bytes / 1e6)
    return report


def _rendered(pages: list[PlannedPage], start: int, stop: int,
              counts: dict[str, Counter]) -> Iterator[tuple[int, PlannedPage, Response]]:
    """Render pages one at a time (only one payload is in memory), counting each as it goes."""
    for index in range(start, stop):
        page = pages[index]
        response = render(page)
        counts["source"][page.doc.source] += 1
        counts["variant"][page.variant] += 1
        counts["language"][page.doc.language] += 1
        counts["content_type"][response.content_type.split(";")[0]] += 1
        yield index, page, response
