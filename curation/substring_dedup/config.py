"""Settings of the substring-dedup stage (Lee et al. 2022, ExactSubstr: repeats of >= 50 tokens)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
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

    tokenizer: str | None = None
    min_tokens: int = 50
    min_bytes: int | None = None
    keep_first: bool = False
    min_doc_chars: int = 50
    partitions: int | None = None

    def __post_init__(self) -> None:
        if (self.tokenizer is None) == (self.min_bytes is None):
            raise ValueError("substring_dedup needs exactly one unit: `tokenizer: PATH` (windows of min_tokens "
                             "tokens) or `tokenizer: null` with `min_bytes: N` (windows of N UTF-8 bytes), "
                             f"got tokenizer={self.tokenizer!r}, min_bytes={self.min_bytes!r}")
        if self.min_tokens < 1:
            raise ValueError(f"substring_dedup.min_tokens must be >= 1, got {self.min_tokens}")
        if self.min_bytes is not None and self.min_bytes < 1:
            raise ValueError(f"substring_dedup.min_bytes must be >= 1, got {self.min_bytes}")
        if self.min_doc_chars < 0:
            raise ValueError(f"substring_dedup.min_doc_chars must be >= 0, got {self.min_doc_chars}")
        if self.partitions is not None and self.partitions < 1:
            raise ValueError(f"substring_dedup.partitions must be >= 1 (or null: one per shard), got {self.partitions}")

    @property
    def window(self) -> int:
        """k: units per window."""
        return self.min_tokens if self.tokenizer is not None else self.min_bytes
