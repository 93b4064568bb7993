from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from classifiers.ensemble import (
    LEVELS, add_quality_columns, assign_buckets, ensemble_bucket, quality_levels,
)
from classifiers.fasttext_classifier import FastTextClassifier
from classifiers.thresholds import (
    PERCENTILES, ClassifierThresholds, ScoreSummary, check_thresholds_match, load_thresholds, merge_summaries,
    save_thresholds,
)


def byte_shares(scores: np.ndarray, n_bytes: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    return np.bincount(assign_buckets(scores, cuts), weights=n_bytes, minlength=20) / n_bytes.sum()


@pytest.mark.parametrize("max_points", [100_000, 128])  # exact, and compressed at every merge
def test_byte_weighted_buckets_are_uniform_on_the_calibration_corpus(labelled, fasttext_path, max_points):
    texts = labelled["text"].to_pylist()
    scores = FastTextClassifier(fasttext_path).score(texts)
    n_bytes = np.array([len(t.encode()) for t in texts], dtype=np.float64)
    assert n_bytes.max() / n_bytes.sum() < 0.01  # no document alone could tip a bucket
    parts = [ScoreSummary.of(scores[i::7], n_bytes[i::7], max_points) for i in range(7)]  # 7 "partitions"
    summary = merge_summaries(*parts, max_points=max_points)
    assert summary.docs == len(texts) and summary.total_weight == pytest.approx(n_bytes.sum())
    shares = byte_shares(scores, n_bytes, summary.cuts())
    assert np.all(np.abs(shares - 0.05) <= 0.015), shares.round(3)


def test_merged_summary_gives_the_cuts_of_the_whole():
    rng = np.random.default_rng(0)
    scores, n_bytes = rng.normal(size=5000), rng.integers(100, 10_000, 5000).astype(float)
    whole = ScoreSummary.of(scores, n_bytes, 10**6).cuts()
    merged = merge_summaries(*[ScoreSummary.of(scores[i::5], n_bytes[i::5], 10**6) for i in range(5)]).cuts()
    np.testing.assert_array_equal(whole, merged)
    compressed = merge_summaries(*[ScoreSummary.of(scores[i::5], n_bytes[i::5], 256) for i in range(5)],
                                 max_points=256)
    shares = byte_shares(scores, n_bytes, compressed.cuts())
    assert np.abs(shares - 0.05).max() < 0.006  # ~1/256 of the bytes per compression level


def test_cuts_and_buckets_are_exact_on_equal_weights():
    scores = np.arange(1.0, 101.0)  # 100 documents of 1 byte: the p-th percentile is score p
    cuts = ScoreSummary.of(scores, np.ones(100)).cuts()
    np.testing.assert_array_equal(cuts, np.array(PERCENTILES, dtype=float))
    buckets = assign_buckets(np.array([0.0, 4.99, 5.0, 9.5, 10.0, 94.9, 95.0, 1e9]), cuts)
    assert buckets.tolist() == [0, 0, 1, 1, 2, 18, 19, 19] and buckets.dtype == np.int8
    assert np.bincount(assign_buckets(scores, cuts)).tolist() == [4] + [5] * 18 + [6]


def test_byte_weighting_moves_the_cuts():
    scores = np.array([0.1, 0.2, 0.3, 0.4])
    cuts = ScoreSummary.of(scores, np.array([97.0, 1, 1, 1])).cuts()
    assert np.all(cuts[:19] == 0.1)  # 97 % of the bytes score 0.1: every cut up to the 95th is there


def test_levels_and_ensemble_are_exact():
    expected = ["low"] * 7 + ["medium-low"] * 5 + ["medium"] * 6 + ["medium-high", "high"]
    assert quality_levels(np.arange(20)).tolist() == expected
    assert LEVELS == ("high", "medium-high", "medium", "medium-low", "low")
    a = np.array([0, 19, 7, 12, 3], dtype=np.int8)
    b = np.array([6, 2, 11, 18, 3], dtype=np.int8)
    assert ensemble_bucket([a, b]).tolist() == [6, 19, 11, 18, 3]


def _thresholds(name: str, fingerprint: str = "f" * 32) -> ClassifierThresholds:
    return ClassifierThresholds(name=name, kind="fasttext", fingerprint=fingerprint,
                                cuts=tuple(np.linspace(0.05, 0.95, 19)), docs=10, bytes=100)


def test_quality_columns_have_the_design_types():
    table = pa.table({"id": ["a", "b", "c"], "text": ["x", "y", "z"]})
    out = add_quality_columns(table, {"ft": np.array([0.01, 0.47, 0.99]), "edu": np.array([0.96, 0.12, 0.0])},
                              {"ft": _thresholds("ft"), "edu": _thresholds("edu")})
    assert out.schema.field("score_ft").type == pa.float32() and out.schema.field("bucket_ft").type == pa.int8()
    assert out.schema.field("quality_bucket").type == pa.int8()
    assert out.schema.field("quality_level").type == pa.string()
    assert out["bucket_ft"].to_pylist() == [0, 9, 19] and out["bucket_edu"].to_pylist() == [19, 2, 0]
    assert out["quality_bucket"].to_pylist() == [19, 9, 19]
    assert out["quality_level"].to_pylist() == ["high", "medium-low", "high"]


def test_threshold_artifact_round_trips_and_guards_its_model(tmp_path: Path):
    saved = {"ft": _thresholds("ft")}
    save_thresholds(saved, tmp_path / "thresholds.json", corpus="crawl-1")
    assert load_thresholds(tmp_path / "thresholds.json") == saved
    check_thresholds_match(saved, {"ft": "f" * 32}, "thresholds.json")
    with pytest.raises(ValueError, match="computed for another model"):
        check_thresholds_match(saved, {"ft": "0" * 32}, "thresholds.json")
    with pytest.raises(ValueError, match="no thresholds for classifier 'edu'"):
        check_thresholds_match(saved, {"edu": "f" * 32}, "thresholds.json")
