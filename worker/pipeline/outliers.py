"""Stage 3b: give HDBSCAN's outliers to the nearest topic when they are close enough to it."""

from __future__ import annotations

import numpy as np

from worker.pipeline.themes import topic_vectors

CHUNK = 8192  # outliers compared with the centroids at a time: (8192, n_clusters) float32, 16 MB at 500 clusters


def reassign_outliers(embeddings: np.ndarray, clusters: np.ndarray, threshold: float) -> np.ndarray:
    """Cluster ids with each outlier moved to the cluster whose centroid is most similar to it.

    Args:
        embeddings: (n, dim) unit-length document embeddings.
        clusters: (n,) cluster id per document, -1 for outliers.
        threshold: the least cosine similarity between an outlier and a centroid for the move.

    Returns:
        (n,) int32 cluster ids; outliers below the threshold stay -1. Clustered documents never move.
        Outliers are compared in chunks of ``CHUNK``, so memory stays flat however many there are (200k
        outliers of a 600k corpus at 500 clusters were 400 MB of similarities at once, plus a copy of their rows).
    """
    result = clusters.astype(np.int32, copy=True)
    outliers = np.flatnonzero(clusters < 0)
    ids = np.unique(clusters[clusters >= 0])
    if len(outliers) == 0 or len(ids) == 0:
        return result
    centroids = topic_vectors(embeddings, clusters, ids).astype(embeddings.dtype, copy=False)
    for first in range(0, len(outliers), CHUNK):
        chunk = outliers[first : first + CHUNK]
        similarity = embeddings[chunk] @ centroids.T  # (chunk, n_clusters)
        best = similarity.argmax(axis=1)
        close = similarity[np.arange(len(chunk)), best] >= threshold
        result[chunk[close]] = ids[best[close]]
    return result
