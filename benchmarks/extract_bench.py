"""Extractors and WARC parsers side by side on one core: pages/s and MB/s of each extract algorithm
on the same pages, with the share of pages whose text equals the reference's (jusText, the library)
and the token overlap against it; responses/s and MB/s of FastWARC and warcio on the same files.

    .venv/bin/ccforge sample-corpus --max-records 3000 /tmp/crawl
    .venv/bin/python benchmarks/extract_bench.py /tmp/crawl [--html-dir /usr/share/doc/debian-handbook/html/en-US]

Algorithms the installed `ExtractConfig` does not know yet are listed as such, not run.
"""

from __future__ import annotations

import argparse
import os
import time
import typing
from collections import Counter
from pathlib import Path

import pyarrow as pa

import justext

from curation.extract import Extractor, decode_html, justext_paragraphs, justext_stoplist, parse_content_type
from curation.extract_config import ExtractConfig, JusTextParams
from curation.io.readers import RAW_WARC_SCHEMA, expand_inputs, read_warc
from curation.justext_fast import fast_justext

REFERENCE = "justext-reference"
ALGORITHMS = (REFERENCE, "justext", "trafilatura", "resiliparse")


def pin_one_core() -> int:
    """Run on one core, so that pages/s is per core whatever the machine."""
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return core


def load_pages(crawl_dir: str | None, html_dir: str | None, max_pages: int) -> pa.Table:
    """Raw WARC rows (payload bytes) of the crawl's responses, then of the HTML files, up to `max_pages`."""
    tables = []
    if crawl_dir:
        tables += [b.table for f in expand_inputs([crawl_dir]) for b in read_warc(f, source="bench")]
    if html_dir:
        files = sorted(Path(html_dir).rglob("*.html"))
        tables.append(pa.Table.from_pylist(
            [{"id": str(p), "url": p.as_uri(), "source": "html", "crawl_date": None,
              "content_type": "text/html", "payload": p.read_bytes()} for p in files], schema=RAW_WARC_SCHEMA))
    return pa.concat_tables(tables).slice(0, max_pages)


def token_overlap(text: str, reference: str) -> float:
    """Bag-of-words F1 of `text` against `reference` (1.0: the same words, as often; both dropped too)."""
    a, b = Counter(text.split()), Counter(reference.split())
    if not a and not b:
        return 1.0
    common = sum((a & b).values())
    return 0.0 if not common else 2 * common / (sum(a.values()) + sum(b.values()))


def run_extractor(algorithm: str, pages: pa.Table) -> tuple[dict[str, str], float]:
    """(id -> text of every kept page, seconds) for one algorithm."""
    extractor = Extractor(ExtractConfig(algorithm=algorithm))
    extractor.run(pages.slice(0, 5))  # warm-up: imports, stop lists, the language model
    started = time.perf_counter()
    result = extractor.run(pages)
    seconds = time.perf_counter() - started
    return dict(zip(result.kept["id"].to_pylist(), result.kept["text"].to_pylist())), seconds


def bench_extractors(pages: pa.Table, algorithms: list[str]) -> list[str]:
    known = typing.get_args(typing.get_type_hints(ExtractConfig)["algorithm"])
    megabytes = sum(len(p) for p in pages["payload"].to_pylist()) / 1e6
    lines = [f"{pages.num_rows} pages, {megabytes:.1f} MB of HTML",
             f"{'algorithm':<18}{'pages/s':>9}{'MB/s':>8}{'kept':>7}{'= ref':>8}{'overlap':>9}"]
    outputs = {}
    for algorithm in algorithms:
        if algorithm not in known:
            lines.append(f"{algorithm:<18}  (not an extract.algorithm here yet)")
            continue
        texts, seconds = run_extractor(algorithm, pages)
        outputs[algorithm] = texts
        reference = outputs.get(REFERENCE)
        equal = overlap = "-"
        if reference is not None:
            ids = pages["id"].to_pylist()
            equal = f"{sum(texts.get(i) == reference.get(i) for i in ids) / len(ids):.1%}"
            overlap = f"{sum(token_overlap(texts.get(i) or '', reference.get(i) or '') for i in ids) / len(ids):.3f}"
        lines.append(f"{algorithm:<18}{pages.num_rows / seconds:>9.0f}{megabytes / seconds:>8.2f}"
                     f"{len(texts):>7}{equal:>8}{overlap:>9}")
    return lines


def bench_justext_core(pages: pa.Table, language: str = "en") -> list[str]:
    """jusText alone on the decoded HTML with the recipe's parameters and one stop list: the library
    as shipped (`justext.justext`), the library's steps with memoised paragraph text (what
    `justext-reference` runs) and the fast path, with how many pages give the library's paragraphs."""
    htmls = [decode_html(payload, parse_content_type(content_type)[1])[0]
             for payload, content_type in zip(pages["payload"].to_pylist(), pages["content_type"].to_pylist())]
    htmls = [html for html in htmls if html and html.strip()]
    stoplist, params = justext_stoplist(language), JusTextParams()
    library_params = {"length_low": params.length_low, "length_high": params.length_high,
                      "stopwords_low": params.stopwords_low, "stopwords_high": params.stopwords_high,
                      "max_link_density": params.max_link_density, "max_heading_distance": params.max_heading_distance,
                      "no_headings": params.no_headings}
    runs = {
        "library 3.0.2": lambda html: [p.text for p in justext.justext(html, stoplist, **library_params) if not p.is_boilerplate],
        "memoised steps": lambda html: [p.text for p in justext_paragraphs(html, stoplist, params) if not p.is_boilerplate],
        "fast": lambda html: fast_justext(html, stoplist, params).kept_text().split("\n\n"),
    }
    lines = [f"jusText alone ({language} stop list), {len(htmls)} decoded pages",
             f"{'jusText':<18}{'pages/s':>9}{'x library':>10}{'= library':>10}"]
    outputs, rates = {}, {}
    for name, run in runs.items():
        run(htmls[0])  # warm-up
        started = time.perf_counter()
        outputs[name] = [run(html) for html in htmls]
        rates[name] = len(htmls) / (time.perf_counter() - started)
        same = sum(["\n\n".join(a) == "\n\n".join(b) for a, b in zip(outputs[name], outputs["library 3.0.2"])])
        lines.append(f"{name:<18}{rates[name]:>9.0f}{rates[name] / rates['library 3.0.2']:>9.1f}x{same / len(htmls):>10.1%}")
    return lines


def bench_readers(crawl_dir: str, repeats: int = 3) -> list[str]:
    """Best of `repeats` full reads of the crawl by each parser; also checks they read the same rows."""
    files = expand_inputs([crawl_dir])
    megabytes = sum(os.path.getsize(f) for f in files) / 1e6
    lines = [f"{len(files)} WARC files, {megabytes:.1f} MB compressed",
             f"{'reader':<18}{'responses/s':>12}{'MB/s':>8}{'responses':>10}"]
    seen = {}
    for reader in ("warcio", "fastwarc"):
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            batches = [b for f in files for b in read_warc(f, source="bench", reader=reader)]
            best = min(best, time.perf_counter() - started)
        seen[reader] = [(b.table, b.rejected) for b in batches]
        responses = sum(b.table.num_rows for b in batches)
        lines.append(f"{reader:<18}{responses / best:>12.0f}{megabytes / best:>8.1f}{responses:>10}")
    same = all(a.equals(b) and ra.equals(rb) for (a, ra), (b, rb) in zip(seen["warcio"], seen["fastwarc"]))
    lines.append(f"same records, ids and rejects: {same and len(seen['warcio']) == len(seen['fastwarc'])}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("crawl_dir", nargs="?", help="WARC files (ccforge sample-corpus)")
    parser.add_argument("--html-dir", help="also extract the .html files under this directory")
    parser.add_argument("--max-pages", type=int, default=3000)
    parser.add_argument("--algorithms", nargs="+", choices=ALGORITHMS, default=list(ALGORITHMS))
    args = parser.parse_args()
    if not (args.crawl_dir or args.html_dir):
        parser.error("give a crawl directory, --html-dir, or both")
    print(f"pinned to core {pin_one_core()}")
    if args.crawl_dir:
        print("\n".join(bench_readers(args.crawl_dir)))
    pages = load_pages(args.crawl_dir, args.html_dir, args.max_pages)
    print("\n".join(bench_justext_core(pages)))
    print("\n".join(bench_extractors(pages, args.algorithms)))


if __name__ == "__main__":
    main()
