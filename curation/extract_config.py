"""Settings of the extract stage, apart from the stage so that a config loads without jusText."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, kw_only=True)
class JusTextParams:
    """jusText settings; defaults are Nemotron-CC's (Su et al. 2024, section 2.1)."""

    length_low: int = 70
    length_high: int = 200
    stopwords_low: float = 0.30
    stopwords_high: float = 0.32
    max_link_density: float = 0.2
    max_heading_distance: int = 200
    no_headings: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.length_low <= self.length_high:
            raise ValueError("extract.justext: need 0 <= length_low <= length_high")
        if not 0 <= self.stopwords_low <= self.stopwords_high <= 1:
            raise ValueError("extract.justext: need 0 <= stopwords_low <= stopwords_high <= 1")


@dataclass(frozen=True, kw_only=True)
class ExtractConfig:
    algorithm: Literal["justext", "trafilatura"] = "justext"
    justext: JusTextParams = field(default_factory=JusTextParams)
    #: Payloads or texts larger than this are dropped as `oversized` (Common Crawl itself
    #: truncates payloads at 1 MiB; 10 MiB leaves room for JSONL books).
    max_doc_bytes: int = 10 * 1024 * 1024
    lid_model_path: str | None = None

    def __post_init__(self) -> None:
        if self.algorithm not in ("justext", "trafilatura"):
            raise ValueError(f"extract.algorithm must be 'justext' or 'trafilatura', got {self.algorithm!r}")
        if self.max_doc_bytes <= 0:
            raise ValueError("extract.max_doc_bytes must be positive")
