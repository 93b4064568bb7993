"""Connected components of the duplicate graph and one deterministic survivor per component.

The edges are gathered on the driver: scipy's csgraph labels a graph of E edges in
O(V + E) time with about 40 bytes per edge, so 10^8 candidate edges (a corpus of a few
hundred million documents at typical web duplication) fit in a few GB. Past that, run the
stage per crawl snapshot or switch to an iterative min-label propagation on the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from curation.fuzzy_dedup.sorting import dense_ranks


@dataclass(frozen=True)
class Clusters:
    """Every document that has an edge: its component and its component's kept document."""

    docs: np.ndarray  # int64, sorted
    component: np.ndarray  # int64, components numbered by their kept document's order
    kept: np.ndarray  # int64: the kept document of each doc's component (the smallest doc index)

    @property
    def removed(self) -> np.ndarray:
        return self.docs != self.kept


def cluster(doc_a: np.ndarray, doc_b: np.ndarray) -> Clusters:
    """Components of the undirected graph; the earliest document (lowest shard, row) is kept."""
    docs, endpoints = dense_ranks(np.r_[np.asarray(doc_a, np.int64), np.asarray(doc_b, np.int64)])
    n_edges = len(doc_a)
    graph = coo_matrix((np.ones(n_edges, dtype=np.int8), (endpoints[:n_edges], endpoints[n_edges:])),
                       shape=(len(docs), len(docs)))
    _, labels = connected_components(graph, directed=False)
    # docs is sorted, so the first member seen of each label is its smallest document.
    first_of_label = np.full(labels.max() + 1 if len(labels) else 0, len(docs), dtype=np.int64)
    np.minimum.at(first_of_label, labels, np.arange(len(docs)))
    component_rank = np.argsort(np.argsort(first_of_label))
    return Clusters(docs=docs, component=component_rank[labels].astype(np.int64),
                    kept=docs[first_of_label[labels]])
