"""Held-out evaluation: precision, recall, F1, ROC-AUC, and agreement between classifiers."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, rankdata, spearmanr


def roc_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counting half
    (the Mann-Whitney U statistic over n_pos * n_neg)."""
    positive = np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"ROC-AUC needs both classes, got {n_pos} positives and {n_neg} negatives")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def binary_metrics(positive: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    positive = np.asarray(positive, bool)
    predicted = np.asarray(scores) >= threshold
    tp = int((predicted & positive).sum())
    precision = tp / max(int(predicted.sum()), 1)
    recall = tp / max(int(positive.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"threshold": float(threshold), "precision": precision, "recall": recall, "f1": f1,
            "roc_auc": roc_auc(positive, scores), "docs": len(positive), "positives": int(positive.sum())}


def correlations(scores: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Pearson and Spearman correlation of every pair of classifiers' scores."""
    names = sorted(scores)
    pairs = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            pairs[f"{a}~{b}"] = {"pearson": float(pearsonr(scores[a], scores[b])[0]),
                                 "spearman": float(spearmanr(scores[a], scores[b])[0])}
    return pairs
