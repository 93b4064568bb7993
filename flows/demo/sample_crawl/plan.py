"""Which documents the sample crawl serves, as which variant, at which URL: a seeded, sorted plan.

The plan holds paths and URLs only (a few hundred bytes a page); payloads are made one at a
time while the WARC files are written.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from itertools import chain, zip_longest

from flows.demo.sample_crawl import sources
from flows.demo.sample_crawl.pages import (
    BOILERPLATE, CLEAN, EXACT_DUPLICATE, LEGACY_CHARSET, META_CHARSET_ONLY, NAV_LINKS, NON_HTML, SHORT,
    PlannedPage, is_man_redirect, legacy_charset_for,
)
from flows.demo.sample_crawl.sources import HANDBOOK, LICENCE, MAN_PAGE, POSTGRESQL, PYTHON, SourceDoc

#: Share of responses per (source, variant). Clean pages dominate as in a real crawl; the rest
#: are the cases curation has to handle: boilerplate, stubs, link farms, duplicates, non-HTML,
#: and charsets that are not UTF-8 or only declared inside the page.
CLEAN_SHARES = {HANDBOOK: 0.30, POSTGRESQL: 0.13, PYTHON: 0.08, MAN_PAGE: 0.27, LICENCE: 0.10}
VARIANT_SHARES = {NAV_LINKS: 0.02, SHORT: 0.02, BOILERPLATE: 0.02, EXACT_DUPLICATE: 0.02, NON_HTML: 0.02,
                  LEGACY_CHARSET: 0.01, META_CHARSET_ONLY: 0.01}
#: Every variant appears at least this often, so a 300-record test corpus has them all.
MIN_VARIANT_PAGES = 2
MIN_RECORDS = 50
#: Languages whose man pages are served in a legacy charset, and the charsets tried for them.
LEGACY_CHARSETS = {"fr": ("iso-8859-1",), "de": ("iso-8859-1",), "ja": ("shift_jis", "euc_jp")}
#: Low-quality variants live next to their page, as /toc/, /amp/ and /print/ copies do on the web.
VARIANT_DIRS = {NAV_LINKS: "toc", SHORT: "amp", BOILERPLATE: "print"}


def plan_pages(*, max_records: int, seed: int) -> list[PlannedPage]:
    """Exactly `max_records` pages when the machine has enough documents, fewer otherwise."""
    if max_records < MIN_RECORDS:
        raise ValueError(f"max_records must be at least {MIN_RECORDS} to hold every page variant; got {max_records}")
    rng = random.Random(seed)
    pools = _source_pools(rng)
    taken: set = set()
    variant_counts = {variant: max(MIN_VARIANT_PAGES, int(share * max_records))
                      for variant, share in VARIANT_SHARES.items()}
    pages = _legacy_charset_pages(pools[MAN_PAGE], variant_counts[LEGACY_CHARSET], taken)
    meta_docs = _draw(pools[MAN_PAGE], variant_counts[META_CHARSET_ONLY], taken,
                      accept=lambda d: d.language != "en" and not is_man_redirect(d))
    pages += [PlannedPage(doc=d, variant=META_CHARSET_ONLY, url=d.url) for d in meta_docs]
    pages += _clean_pages(pools, max_records - sum(variant_counts.values()), taken)
    pages += _duplicate_pages([p for p in pages if p.variant == CLEAN], variant_counts[EXACT_DUPLICATE], rng)
    pages += _low_quality_pages(pools, variant_counts, taken)
    pages += [PlannedPage(doc=d, variant=NON_HTML, url=d.url)
              for d in _draw(pools[sources.DOC_FILE], variant_counts[NON_HTML], taken)]
    shortfall = max_records - len(pages)
    pages += [PlannedPage(doc=d, variant=CLEAN, url=d.url)
              for d in _draw(chain(*(pools[s] for s in CLEAN_SHARES)), shortfall, taken, accept=_servable)]
    rng.shuffle(pages)  # a crawl's WARC files mix hosts
    return pages


def _source_pools(rng: random.Random) -> dict[str, list[SourceDoc]]:
    """Every source's documents in sampling order: shuffled, languages taking turns."""
    licences = sources.licence_docs()
    common = [d for d in licences if d.path.is_relative_to(sources.COMMON_LICENSES_ROOT)]
    return {
        HANDBOOK: _interleave(sources.handbook_docs(), rng, key=lambda d: d.language),
        POSTGRESQL: _interleave(sources.postgresql_docs(), rng),
        PYTHON: _interleave(sources.python_docs(), rng),
        MAN_PAGE: _interleave(sources.man_pages(translated=True) + sources.man_pages(translated=False), rng,
                              key=lambda d: d.language),
        # The common licence texts always come first: they hold the guaranteed near-duplicate pairs.
        LICENCE: common + _interleave([d for d in licences if d not in common], rng),
        sources.DOC_FILE: _interleave(sources.doc_files(), rng, key=_file_kind),
    }


def _file_kind(doc: SourceDoc) -> str:
    """PNG, gzip and plain text take turns, so even a small sample has each."""
    return doc.path.suffix if doc.path.suffix in (".png", ".gz") else "text"


def _interleave(docs: list[SourceDoc], rng: random.Random,
                key: Callable[[SourceDoc], object] = lambda d: "") -> list[SourceDoc]:
    groups: dict = {}
    for doc in docs:
        groups.setdefault(key(doc), []).append(doc)
    shuffled = []
    for group_key in sorted(groups, key=str):
        group = groups[group_key]
        rng.shuffle(group)
        shuffled.append(group)
    return [doc for turn in zip_longest(*shuffled) for doc in turn if doc is not None]


def _draw(docs: Iterable[SourceDoc], count: int, taken: set,
          accept: Callable[[SourceDoc], bool] = lambda d: True) -> list[SourceDoc]:
    """The next `count` documents not served yet that `accept` likes; each path is served once."""
    drawn = []
    for doc in docs:
        if len(drawn) >= count:
            break
        if doc.path not in taken and accept(doc):
            taken.add(doc.path)
            drawn.append(doc)
    return drawn


def _servable(doc: SourceDoc) -> bool:
    return doc.source != MAN_PAGE or not is_man_redirect(doc)


def _legacy_charset_pages(man_docs: list[SourceDoc], count: int, taken: set) -> list[PlannedPage]:
    pages = []
    for doc in man_docs:
        if len(pages) >= count:
            break
        if doc.language not in LEGACY_CHARSETS or doc.path in taken or is_man_redirect(doc):
            continue
        candidates = LEGACY_CHARSETS[doc.language]
        if len(pages) % 2:  # Japanese pages alternate between Shift_JIS and EUC-JP first
            candidates = candidates[::-1]
        charset = legacy_charset_for(doc, candidates)
        if charset:
            taken.add(doc.path)
            pages.append(PlannedPage(doc=doc, variant=LEGACY_CHARSET, url=doc.url, charset=charset))
    return pages


def _clean_pages(pools: dict[str, list[SourceDoc]], count: int, taken: set) -> list[PlannedPage]:
    total_share = sum(CLEAN_SHARES.values())
    pages = []
    for source, share in CLEAN_SHARES.items():
        docs = _draw(pools[source], round(count * share / total_share), taken, accept=_servable)
        pages += [PlannedPage(doc=d, variant=CLEAN, url=d.url) for d in docs]
    return pages


def _duplicate_pages(clean: list[PlannedPage], count: int, rng: random.Random) -> list[PlannedPage]:
    """The same bytes again at an alias URL (/3/ for /3.11/, /current/ for /15/, ...)."""
    originals = rng.sample(clean, min(count, len(clean)))
    return [PlannedPage(doc=p.doc, variant=EXACT_DUPLICATE, url=sources.alias_url(p.doc)) for p in originals]


def _low_quality_pages(pools: dict[str, list[SourceDoc]], variant_counts: dict[str, int],
                       taken: set) -> list[PlannedPage]:
    html_pools = [pools[HANDBOOK], pools[POSTGRESQL], pools[PYTHON]]
    pages = []
    for variant, directory in VARIANT_DIRS.items():
        for doc in _draw_rotating(html_pools, variant_counts[variant], taken):
            base, name = doc.url.rsplit("/", 1)
            pages.append(PlannedPage(doc=doc, variant=variant, url=f"{base}/{directory}/{name}"))
    return pages


def _draw_rotating(pools: list[list[SourceDoc]], count: int, taken: set) -> list[SourceDoc]:
    """One document from each pool in turn, so every source (and handbook language) gets its share."""
    drawn: list[SourceDoc] = []
    while len(drawn) < count:
        before = len(drawn)
        for pool in pools:
            drawn += _draw(pool, min(1, count - len(drawn)), taken)
        if len(drawn) == before:
            break
    return drawn
