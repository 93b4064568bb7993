"""Substring deduplication (Lee et al. 2022, ExactSubstr): cut every k-unit window that repeats.

A window of k units (tokens of a named tokenizer, or UTF-8 bytes) is repeated when the same k
units occur at least twice in the corpus (across or within documents, overlapping occurrences
included); every unit such a window covers is cut, in all copies (Lee et al.'s tool) or in all
but the first (`keep_first`). This is exactly "remove every substring of >= k units that
occurs twice or more". Passes (the flow runs them on Dask, see `flows.engine.substring_dedup`):

1. per shard: rolling hash of every window (`units`), partitioned by hash range;
2. per hash range: windows whose hash occurs twice are candidates;
3. per shard: the candidates' exact contents;
4. per hash range: repeats confirmed on the contents (a hash collision removes nothing);
5. per shard: the confirmed windows as merged character spans (`passes`), then cut (`cut`).
"""

from curation.substring_dedup.config import SubstringDedupConfig

__all__ = ["SubstringDedupConfig"]
