"""A Common Crawl-like sample crawl built offline from real documents on this machine (issue 2).

`build_sample_corpus(out_dir)` writes CC-SAMPLE-*.warc.gz files: Debian handbook pages in every
installed language, PostgreSQL and Python docs, man pages in ~25 languages, licence files (real
near-duplicates), plus the low-quality, duplicate, non-HTML and legacy-charset pages a crawl has.
"""

from flows.demo.sample_crawl.build import SampleCorpusReport, build_sample_corpus
from flows.demo.sample_crawl.packages import ensure_doc_packages

__all__ = ["SampleCorpusReport", "build_sample_corpus", "ensure_doc_packages"]
