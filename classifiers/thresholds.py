"""Byte-weighted percentile thresholds of classifier scores, computed once and saved.

Nemotron-CC (Su et al. 2024, section 2.2) cuts each classifier's scores at its 5th, 10th, ...,
95th percentiles, weighting every document by its UTF-8 byte length, which gives buckets
0..19 that each hold 5 % of the corpus bytes. Percentiles of a whole crawl come from a
mergeable summary: each partition summarises its (score, bytes) pairs as at most
`max_points` weighted points in score order, summaries merge by concatenating and
re-compressing, and the cuts are read off the merged summary. Compression merges runs of
neighbouring points that hold about 1/max_points of the bytes each, so a cut is off by at
most that fraction of the bytes per merge level.

The cuts are saved as a versioned JSON artifact naming each classifier and the fingerprint of
its model, so later crawls reuse them and get stable buckets.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: 5, 10, ..., 95: 19 cuts, 20 buckets (Nemotron-CC).
PERCENTILES = tuple(range(5, 100, 5))
NUM_BUCKETS = len(PERCENTILES) + 1
DEFAULT_SUMMARY_POINTS = 8192
ARTIFACT_FORMAT = "ccforge-quality-thresholds"
ARTIFACT_VERSION = 1


@dataclass(frozen=True)
class ScoreSummary:
    """Weighted points (score ascending, weight = bytes) standing for a set of documents."""

    scores: np.ndarray  # [P] float64, ascending
    weights: np.ndarray  # [P] float64
    docs: int

    @classmethod
    def of(cls, scores: np.ndarray, weights: np.ndarray, max_points: int = DEFAULT_SUMMARY_POINTS) -> ScoreSummary:
        order = np.argsort(scores, kind="stable")
        summary = cls(np.asarray(scores, np.float64)[order], np.asarray(weights, np.float64)[order], len(order))
        return summary.compressed(max_points)

    @classmethod
    def empty(cls) -> ScoreSummary:
        return cls(np.zeros(0), np.zeros(0), 0)

    @property
    def total_weight(self) -> float:
        return float(self.weights.sum())

    def compressed(self, max_points: int) -> ScoreSummary:
        """At most `max_points` points: neighbours merged into runs of ~total/max_points bytes."""
        if len(self.scores) <= max_points:
            return self
        cumulative = np.cumsum(self.weights)
        # The run a point belongs to is decided by the middle of its own weight, so a heavy
        # document never spreads over runs; runs stay contiguous in score order.
        run = np.minimum(((cumulative - self.weights / 2) / cumulative[-1] * max_points).astype(np.int64),
                         max_points - 1)
        starts = np.flatnonzero(np.r_[True, run[1:] != run[:-1]])
        weights = np.add.reduceat(self.weights, starts)
        weighted = np.add.reduceat(self.scores * self.weights, starts)
        # A run of zero-byte documents keeps its first score (no weight to average by).
        scores = np.where(weights > 0, weighted / np.where(weights > 0, weights, 1), self.scores[starts])
        return ScoreSummary(scores, weights, self.docs)

    def merge(self, *others: ScoreSummary, max_points: int = DEFAULT_SUMMARY_POINTS) -> ScoreSummary:
        parts = (self, *others)
        scores = np.concatenate([p.scores for p in parts])
        order = np.argsort(scores, kind="stable")
        weights = np.concatenate([p.weights for p in parts])[order]
        return ScoreSummary(scores[order], weights, sum(p.docs for p in parts)).compressed(max_points)

    def cuts(self, percentiles: tuple[int, ...] = PERCENTILES) -> np.ndarray:
        """The lowest score at which the cumulative weight reaches each percentile."""
        if self.total_weight <= 0:
            raise ValueError("cannot compute percentiles of an empty corpus (no documents or no bytes)")
        cumulative = np.cumsum(self.weights)
        targets = np.asarray(percentiles, np.float64) * cumulative[-1] / 100.0  # 55 * 100 / 100 is exactly 55
        index = np.minimum(np.searchsorted(cumulative, targets, side="left"), len(cumulative) - 1)
        return self.scores[index]


def merge_summaries(*summaries: ScoreSummary, max_points: int = DEFAULT_SUMMARY_POINTS) -> ScoreSummary:
    if not summaries:
        return ScoreSummary.empty()
    return summaries[0].merge(*summaries[1:], max_points=max_points)


@dataclass(frozen=True, kw_only=True)
class ClassifierThresholds:
    """The 19 cuts of one classifier, and which model and corpus they came from."""

    name: str
    kind: str
    fingerprint: str
    cuts: tuple[float, ...]
    docs: int
    bytes: int

    def __post_init__(self) -> None:
        if len(self.cuts) != len(PERCENTILES):
            raise ValueError(f"thresholds of {self.name}: {len(self.cuts)} cuts, expected {len(PERCENTILES)}")
        if any(b < a for a, b in zip(self.cuts, self.cuts[1:])):
            raise ValueError(f"thresholds of {self.name}: cuts are not ascending")

    @classmethod
    def from_summary(cls, name: str, kind: str, fingerprint: str, summary: ScoreSummary) -> ClassifierThresholds:
        return cls(name=name, kind=kind, fingerprint=fingerprint, cuts=tuple(float(c) for c in summary.cuts()),
                   docs=summary.docs, bytes=round(summary.total_weight))


def save_thresholds(thresholds: dict[str, ClassifierThresholds], path: str | Path, *, corpus: str = "") -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "format": ARTIFACT_FORMAT, "version": ARTIFACT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "corpus": corpus, "percentiles": list(PERCENTILES), "weighting": "utf8_bytes",
        "classifiers": {name: {"kind": t.kind, "fingerprint": t.fingerprint, "cuts": list(t.cuts),
                               "docs": t.docs, "bytes": t.bytes} for name, t in thresholds.items()},
    }
    temp = path.with_name(f".tmp-{path.name}")
    temp.write_text(json.dumps(data, indent=2) + "\n")
    temp.replace(path)


def load_thresholds(path: str | Path) -> dict[str, ClassifierThresholds]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such thresholds file")
    data = json.loads(path.read_text())
    if data.get("format") != ARTIFACT_FORMAT:
        raise ValueError(f"{path}: not a thresholds artifact (format {data.get('format')!r})")
    if data.get("version") != ARTIFACT_VERSION or tuple(data.get("percentiles", ())) != PERCENTILES:
        raise ValueError(f"{path}: thresholds version {data.get('version')} or percentiles not supported")
    return {name: ClassifierThresholds(name=name, kind=c["kind"], fingerprint=c["fingerprint"],
                                       cuts=tuple(c["cuts"]), docs=c["docs"], bytes=c["bytes"])
            for name, c in data["classifiers"].items()}


def check_thresholds_match(thresholds: dict[str, ClassifierThresholds], fingerprints: dict[str, str],
                           source: str) -> None:
    """Saved cuts apply only to the very models that made them."""
    for name, fingerprint in fingerprints.items():
        if name not in thresholds:
            raise ValueError(f"{source}: no thresholds for classifier {name!r} (has {', '.join(sorted(thresholds))})")
        if thresholds[name].fingerprint != fingerprint:
            raise ValueError(f"{source}: thresholds of {name!r} were computed for another model "
                             f"(fingerprint {thresholds[name].fingerprint[:12]}, model {fingerprint[:12]})")
