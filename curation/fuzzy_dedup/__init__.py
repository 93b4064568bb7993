"""Fuzzy deduplication: MinHash signatures and LSH bands (further passes: issue 3)."""
