"""Quality classifiers (fastText, embedding regression), ensemble and percentile buckets."""
