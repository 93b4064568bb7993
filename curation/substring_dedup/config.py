"""Settings of the substring-dedup stage (Lee et al. 2022, ExactSubstr: repeats of >= 50 tokens)."""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator
from pydantic.dataclasses import dataclass


@dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class SubstringDedupConfig:
    """Exactly one unit: `tokenizer` (windows of `min_tokens` tokens) or `min_bytes` (UTF-8 bytes).

    Lee et al. (2022, Sec. 4.1) cut every substring of >= 50 tokens that occurs twice or more,
    all copies included (`keep_first: false`, their tool's behaviour); `keep_first: true` keeps
    the earliest copy (shard, row, position) of each repeated window. A cut document whose
    remaining text (stripped) is shorter than `min_doc_chars` is dropped as
    `substring_duplicate`; 50 characters is less than one sentence, a fragment with no
    training value (the heuristics stage applies the real length rules later). `partitions`
    is the number of hash ranges of the global passes (None: one per input shard).
    """

    tokenizer: str | None = None  # tokenizer.json (or a directory with one): windows of min_tokens tokens
    min_tokens: int = Field(default=50, ge=1)  # window length in tokens (Lee et al.: 50)
    min_bytes: int | None = Field(default=None, ge=1)  # window length in UTF-8 bytes, without a tokenizer
    keep_first: bool = False  # keep the earliest copy of each repeated window instead of cutting all
    min_doc_chars: int = Field(default=50, ge=0)  # a cut document shorter than this is dropped
    partitions: int | None = Field(default=None, ge=1)  # hash ranges of the global passes; null: one per shard

    @model_validator(mode="after")
    def _one_unit(self) -> SubstringDedupConfig:
        if (self.tokenizer is None) == (self.min_bytes is None):
            raise ValueError("substring_dedup needs exactly one unit: `tokenizer: PATH` (windows of min_tokens "
                             "tokens) or `tokenizer: null` with `min_bytes: N` (windows of N UTF-8 bytes), "
                             f"got tokenizer={self.tokenizer!r}, min_bytes={self.min_bytes!r}")
        return self

    @property
    def window(self) -> int:
        """k: units per window."""
        return self.min_tokens if self.tokenizer is not None else self.min_bytes
