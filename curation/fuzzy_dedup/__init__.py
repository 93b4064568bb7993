"""Fuzzy deduplication: MinHash signatures, LSH buckets, exact-Jaccard verification, components.

Passes joined by files (`passes`; the flow maps them on Dask, see `flows.engine.fuzzy_dedup`):
1. per shard: shingle sets, signatures and band keys (`shingles`, `minhash`, `lsh.band_table`);
2. per range of band keys, from every shard: star-and-chain candidate edges per bucket (`lsh`);
3. per shard of the pairs' first document: exact Jaccard (`jaccard`), kept at >= threshold;
4. per partition, in rounds: connected components, the earliest document kept (`components`);
5. per shard: its removed documents and their kept ones; then drop them as `fuzzy_duplicate`.
"""

from curation.fuzzy_dedup.config import FuzzyDedupConfig

__all__ = ["FuzzyDedupConfig"]
