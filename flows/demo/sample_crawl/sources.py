"""Real documents on this machine that the sample crawl serves, each with the URL it is served at.

Every list is sorted so that sampling with a fixed seed picks the same documents on every run.
Languages are ISO 639-1 codes ("und" for bytes that are not text).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HANDBOOK_ROOT = Path("/usr/share/doc/debian-handbook/html")
POSTGRESQL_ROOT = Path("/usr/share/doc/postgresql-doc-15/html")
PYTHON_ROOT = Path("/usr/share/doc/python3.11/html")
MAN_ROOT = Path("/usr/share/man")
DOC_ROOT = Path("/usr/share/doc")
COMMON_LICENSES_ROOT = Path("/usr/share/common-licenses")

# Sources, as named in the report.
HANDBOOK = "debian_handbook"
POSTGRESQL = "postgresql_doc"
PYTHON = "python_doc"
MAN_PAGE = "man_page"
LICENCE = "licence"
DOC_FILE = "doc_file"

#: Pages larger than this are skipped: CC truncates payloads at 1 MiB, and a few huge
#: files (2 MB boost copyright files, Python's genindex-all) would dominate a small sample.
MAX_SOURCE_BYTES = 256 * 1024
#: Non-HTML files stay small: they are a seasoning, not the meal.
MAX_DOC_FILE_BYTES = 64 * 1024

SERVER_BY_SOURCE = {
    HANDBOOK: "Apache/2.4.57 (Debian)",
    POSTGRESQL: "nginx",
    PYTHON: "nginx",
    MAN_PAGE: "Apache",
    LICENCE: "nginx/1.22.1",
    DOC_FILE: "Apache",
}


@dataclass(frozen=True, kw_only=True)
class SourceDoc:
    """One file on disk and where the sample crawl says it fetched it from."""

    source: str
    path: Path
    language: str
    url: str


def handbook_docs() -> list[SourceDoc]:
    """debian-handbook HTML pages in every installed language (fr-FR -> fr)."""
    docs = []
    for lang_dir in _sorted_dirs(HANDBOOK_ROOT):
        for page in _sorted_files(lang_dir, "*.html"):
            url = f"https://debian-handbook.info/browse/{lang_dir.name}/stable/{page.name}"
            docs.append(SourceDoc(source=HANDBOOK, path=page, language=_language(lang_dir.name), url=url))
    return docs


def postgresql_docs() -> list[SourceDoc]:
    return [SourceDoc(source=POSTGRESQL, path=page, language="en",
                      url=f"https://www.postgresql.org/docs/15/{page.name}")
            for page in _sorted_files(POSTGRESQL_ROOT, "*.html")]


def python_docs() -> list[SourceDoc]:
    return [SourceDoc(source=PYTHON, path=page, language="en",
                      url=f"https://docs.python.org/3.11/{page.relative_to(PYTHON_ROOT).as_posix()}")
            for page in _sorted_files(PYTHON_ROOT, "**/*.html")
            if not page.relative_to(PYTHON_ROOT).parts[0].startswith("_")]


def man_pages(*, translated: bool) -> list[SourceDoc]:
    """Compressed troff man pages: the translated ones under /usr/share/man/<lang>/, or English."""
    lang_dirs = [d for d in _sorted_dirs(MAN_ROOT) if not d.name.startswith("man")] if translated else [MAN_ROOT]
    docs = []
    for lang_dir in lang_dirs:
        language = _language(lang_dir.name) if translated else "en"
        url_lang = lang_dir.name if translated else "en"
        for page in _sorted_files(lang_dir, "man*/*.gz"):
            name = page.name.removesuffix(".gz")
            url = f"https://manpages.debian.org/bookworm/{url_lang}/{name}.html"
            docs.append(SourceDoc(source=MAN_PAGE, path=page, language=language, url=url))
    return docs


def licence_docs() -> list[SourceDoc]:
    """The common licence texts first, then every package's copyright file.

    Both are real near-duplicates: GFDL-1.2/1.3 and LGPL-2/2.1 differ in a few paragraphs,
    and many copyright files embed the same GPL or Apache text under a different header.
    """
    common = [SourceDoc(source=LICENCE, path=path, language="en",
                        url=f"https://sources.debian.org/src/base-files/bookworm/licenses/{path.name}/")
              for path in _sorted_files(COMMON_LICENSES_ROOT, "*")]
    copyrights = [SourceDoc(source=LICENCE, path=path, language="en",
                            url=f"https://sources.debian.org/src/{path.parent.name}/bookworm/debian/copyright/")
                  for path in _sorted_files(DOC_ROOT, "*/copyright")]
    return common + copyrights


def doc_files() -> list[SourceDoc]:
    """Non-HTML files: PNG figures, gzipped changelogs and plain-text READMEs."""
    pngs = _sorted_files(PYTHON_ROOT / "_images", "*.png") + _sorted_files(HANDBOOK_ROOT / "en-US" / "images", "*.png")
    changelogs = _sorted_files(DOC_ROOT, "*/changelog.Debian.gz")
    readmes = [p for p in _sorted_files(DOC_ROOT, "*/README*") if p.suffix not in {".gz", ".html"}]
    docs = [SourceDoc(source=DOC_FILE, path=p, language="und", url=_doc_file_url(p)) for p in pngs + changelogs]
    docs += [SourceDoc(source=DOC_FILE, path=p, language="en", url=_doc_file_url(p)) for p in readmes]
    return [d for d in docs if d.path.stat().st_size <= MAX_DOC_FILE_BYTES]


def _doc_file_url(path: Path) -> str:
    if path.is_relative_to(PYTHON_ROOT):
        return f"https://docs.python.org/3.11/{path.relative_to(PYTHON_ROOT).as_posix()}"
    if path.is_relative_to(HANDBOOK_ROOT):
        return f"https://debian-handbook.info/browse/{path.relative_to(HANDBOOK_ROOT).as_posix()}"
    return f"https://deb.debian.org/debian/doc/{path.relative_to(DOC_ROOT).as_posix()}"


def alias_url(doc: SourceDoc) -> str:
    """Another URL a crawler meets the same page at (a version alias or an unversioned path)."""
    aliases = {HANDBOOK: ("/stable/", "/bookworm/"), POSTGRESQL: ("/docs/15/", "/docs/current/"),
               PYTHON: ("/3.11/", "/3/"), MAN_PAGE: ("/bookworm/", "/stable/"), LICENCE: ("/bookworm/", "/stable/"),
               DOC_FILE: ("/debian/doc/", "/debian/doc/current/")}
    old, new = aliases[doc.source]
    return doc.url.replace(old, new, 1)


def _language(locale_name: str) -> str:
    """fr-FR, pt_BR, zh_TW -> fr, pt, zh."""
    return locale_name.replace("_", "-").split("-")[0].lower()


def _sorted_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()) if root.is_dir() else []


def _sorted_files(root: Path, pattern: str) -> list[Path]:
    """Regular files only: symlinked pages and translations would be duplicates we did not choose."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob(pattern)
                  if p.is_file() and not p.is_symlink() and 0 < p.stat().st_size <= MAX_SOURCE_BYTES)
