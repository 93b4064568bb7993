"""Settings of the fuzzy-dedup stage (Nemotron-CC defaults: char 24-grams, 20 bands x 13 rows).

No numba here: a config loads in every command, the kernels only where they run."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field, model_validator
from pydantic.dataclasses import dataclass


def shingle_spec(shingle: str) -> tuple[str, int]:
    """("char" or "word", size) of a spec like "char:24" or "word:5"."""
    kind, _, size = shingle.partition(":")
    if kind not in ("char", "word") or not size.isdigit() or int(size) < 1:
        raise ValueError(f"shingle must look like 'char:24' or 'word:5', got {shingle!r}")
    return kind, int(size)


def _checked_shingle(shingle: str) -> str:
    shingle_spec(shingle)
    return shingle


Shingle = Annotated[str, AfterValidator(_checked_shingle)]


@dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class MinHashConfig:
    shingle: Shingle = "char:24"  # "char:N" (character N-grams) or "word:N" (word N-grams)
    num_perm: int = Field(default=260, ge=1)
    bands: int = Field(default=20, ge=1)
    rows: int = Field(default=13, ge=1)
    seed: int = 42

    @model_validator(mode="after")
    def _bands_fill_signature(self) -> MinHashConfig:
        if self.bands * self.rows != self.num_perm:
            raise ValueError(f"bands x rows must equal num_perm: {self.bands} x {self.rows} != {self.num_perm}")
        return self


@dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class FuzzyDedupConfig:
    """`threshold` is the exact-Jaccard cut used when `verify` is on.

    With b bands of r rows two documents of Jaccard s become candidates with probability
    1 - (1 - s^r)^b; 20 x 13 puts the steep part of that curve at about 0.8, which also
    means a pair at exactly 0.8 is found only 68 % of the time. When candidates are verified,
    precision no longer depends on the banding, so `recall_rows` cuts the same signature a
    second time into 32 bands of 8 rows (0.997 at Jaccard 0.8, 0.12 at 0.5) and
    verification drops the extra candidates. `recall_rows: null` keeps Nemotron-CC's
    banding alone; without verification it is never used.
    """

    shingle: Shingle = "char:24"  # "char:N" (character N-grams) or "word:N" (word N-grams)
    bands: int = Field(default=20, ge=1)  # LSH bands; the signature has bands x rows hashes
    rows: int = Field(default=13, ge=1)  # hashes per band
    seed: int = 42  # of the MinHash permutations
    threshold: float = Field(default=0.8, gt=0, le=1)  # exact Jaccard at or above which a candidate is a duplicate
    verify: bool = True  # compute each candidate pair's Jaccard; false keeps every LSH candidate
    recall_rows: int | None = Field(default=8, ge=1)  # rows of the second banding (verify only); null: none

    @model_validator(mode="after")
    def _recall_rows_fit(self) -> FuzzyDedupConfig:
        if self.recall_rows is not None and self.recall_rows > self.bands * self.rows:
            raise ValueError(f"recall_rows must be between 1 and bands x rows, got {self.recall_rows}")
        return self

    @property
    def minhash(self) -> MinHashConfig:
        return MinHashConfig(shingle=self.shingle, num_perm=self.bands * self.rows, bands=self.bands,
                             rows=self.rows, seed=self.seed)

    @property
    def active_recall_rows(self) -> int | None:
        return self.recall_rows if self.verify else None

    def candidate_probability(self, jaccard: float) -> float:
        """Probability that two documents of this Jaccard similarity share at least one band
        (of either banding, taken as independent: a slight overestimate)."""
        missed = (1.0 - jaccard ** self.rows) ** self.bands
        if self.active_recall_rows:
            rows = self.active_recall_rows
            missed *= (1.0 - jaccard ** rows) ** (self.bands * self.rows // rows)
        return 1.0 - missed
