"""Stage 3b: give HDBSCAN's outliers to the nearest topic when they are close enough to it."""

from __future__ import annotations

import numpy as np


def reassign_outliers(embeddings: np.ndarray, clusters: np.ndarray, threshold: float) -> np.ndarray:
    """Cluster ids with each outlier moved to the cluster whose centroid is most similar to it.

    Args:
        embeddings: (n, dim) unit-length document embeddings.
        clusters: (n,) cluster id per document, -1 for outliers.
        threshold: the least cosine similarity between an outlier and a centroid for the move.

    Returns:
        (n,) int32 cluster ids; outliers below the threshold stay -1. Clustered documents never move.
    """
    result = clusters.astype(np.int32, copy=True)
    outliers = np.flatnonzero(clusters < 0)
    ids = np.unique(clusters[clusters >= 0])
    if len(outliers) == 0 or len(ids) == 0:
        return result
    centroids = np.stack([embeddings[clusters == c].mean(axis=0) for c in ids])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    similarity = embeddings[outliers] @ centroids.T  # (n_outliers, n_clusters)
    best = similarity.argmax(axis=1)
    close = similarity[np.arange(len(outliers)), best] >= threshold
    result[outliers[close]] = ids[best[close]]
    return result
