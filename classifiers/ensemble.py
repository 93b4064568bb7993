"""Percentile buckets, the ensemble bucket and the five quality levels (Nemotron-CC section 2.2).

bucket = how many of a classifier's 19 cuts the score reaches (0..19); the ensemble bucket is
the maximum over classifiers; levels: high 19, medium-high 18, medium 12-17, medium-low 7-11,
low 0-6.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from classifiers.columns import QUALITY_BUCKET, QUALITY_LEVEL, bucket_column, score_column
from classifiers.thresholds import NUM_BUCKETS, ClassifierThresholds

LEVELS = ("high", "medium-high", "medium", "medium-low", "low")
#: Lowest bucket of each level, from the top.
LEVEL_FLOORS = {"high": 19, "medium-high": 18, "medium": 12, "medium-low": 7, "low": 0}
LEVEL_OF_BUCKET = np.array([next(lv for lv in LEVELS if b >= LEVEL_FLOORS[lv]) for b in range(NUM_BUCKETS)],
                           dtype=object)


def assign_buckets(scores: np.ndarray, cuts: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """int8 bucket per score: the number of cuts <= score (a score equal to a cut goes up)."""
    return np.searchsorted(np.asarray(cuts, np.float64), np.asarray(scores, np.float64), side="right").astype(np.int8)


def ensemble_bucket(buckets: list[np.ndarray]) -> np.ndarray:
    """The maximum bucket over classifiers: a document counts as good if any classifier says so."""
    return np.max(np.stack(buckets), axis=0).astype(np.int8)


def quality_levels(buckets: np.ndarray) -> np.ndarray:
    return LEVEL_OF_BUCKET[np.asarray(buckets, np.int64)]


def add_quality_columns(table: pa.Table, scores: dict[str, np.ndarray],
                        thresholds: dict[str, ClassifierThresholds]) -> pa.Table:
    """Set `score_<clf>` (float32), `bucket_<clf>` (int8), `quality_bucket` (int8), `quality_level`."""
    buckets = []
    for name, values in scores.items():
        bucket = assign_buckets(values, thresholds[name].cuts)
        buckets.append(bucket)
        table = _set_column(table, score_column(name), pa.array(values, pa.float32()))
        table = _set_column(table, bucket_column(name), pa.array(bucket, pa.int8()))
    ensemble = ensemble_bucket(buckets)
    table = _set_column(table, QUALITY_BUCKET, pa.array(ensemble, pa.int8()))
    return _set_column(table, QUALITY_LEVEL, pa.array(quality_levels(ensemble).tolist(), pa.string()))


def _set_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, values)
    return table.append_column(name, values)
