"""Column names the classifiers read and write: document columns, quality columns, training sets.

They are defined here and not in `curation.schema` because dependencies flow one way
(DESIGN.md: curation -> classifiers, so classifiers never imports curation). `curation.schema`
re-exports the document and quality names, so that curation code takes every column name
from `curation.schema` and each name is spelled once.
"""

from __future__ import annotations

# Document columns a classifier reads (and a labelled training set carries).
ID = "id"
TEXT = "text"
SOURCE = "source"

# Quality columns the classify stage adds (Nemotron-CC section 2.2).
SCORE_PREFIX = "score_"
BUCKET_PREFIX = "bucket_"
QUALITY_BUCKET = "quality_bucket"
QUALITY_LEVEL = "quality_level"

# Columns of a labelled training set besides id, text and source.
LABEL = "label"  # hq / cc
SCORE = "score"  # 0-5 regression target
SPLIT = "split"  # train / test


def score_column(name: str) -> str:
    """The raw-score column of classifier `name` (float32)."""
    return f"{SCORE_PREFIX}{name}"


def bucket_column(name: str) -> str:
    """The 0..19 percentile-bucket column of classifier `name` (int8)."""
    return f"{BUCKET_PREFIX}{name}"
