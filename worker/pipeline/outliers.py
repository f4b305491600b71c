"""Stage 3b: give HDBSCAN's outliers to the nearest topic when they are close enough to it, or, with a target
share of outliers, lower "close enough" until at most that share is left."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from worker.pipeline.themes import topic_vectors

CHUNK = 8192  # outliers compared with the centroids at a time: (8192, n_clusters) float32, 16 MB at 500 clusters


@dataclass(frozen=True)
class Nearest:
    """Each outlier's nearest topic: ``outliers`` (m,) document indices, ``topics`` (m,) the cluster id whose
    centroid is most similar, ``similarity`` (m,) float32 the cosine to it. Empty when there are no outliers
    or no clusters."""

    outliers: np.ndarray
    topics: np.ndarray
    similarity: np.ndarray


@dataclass(frozen=True)
class OutlierReduction:
    """What the reduction did, for the job's scores."""

    threshold: float  # the least cosine to its nearest topic's centroid that an outlier needed to join it
    target: float | None  # the most outliers asked for, a share of the documents (max_outlier_share); None: none
    share: float  # documents still outliers afterwards, 0..1
    met: bool | None  # whether ``share`` is at most ``target`` (None without a target)


def nearest_topics(embeddings: np.ndarray, clusters: np.ndarray) -> Nearest:
    """Each outlier's most similar cluster centroid, computed once.

    Args:
        embeddings: (n, dim) unit-length document embeddings.
        clusters: (n,) cluster id per document, -1 for outliers.

    Outliers are compared in chunks of ``CHUNK``, so memory stays flat however many there are (200k outliers of
    a 600k corpus at 500 clusters were 400 MB of similarities at once, plus a copy of their rows).
    """
    outliers = np.flatnonzero(clusters < 0)
    ids = np.unique(clusters[clusters >= 0])
    if len(outliers) == 0 or len(ids) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Nearest(empty, empty.astype(np.int32), np.zeros(0, dtype=np.float32))
    centroids = topic_vectors(embeddings, clusters, ids).astype(embeddings.dtype, copy=False)
    topics = np.empty(len(outliers), dtype=np.int32)
    similarity = np.empty(len(outliers), dtype=np.float32)
    for first in range(0, len(outliers), CHUNK):
        chunk = outliers[first : first + CHUNK]
        scores = embeddings[chunk] @ centroids.T  # (chunk, n_clusters)
        best = scores.argmax(axis=1)
        topics[first : first + len(chunk)] = ids[best]
        similarity[first : first + len(chunk)] = scores[np.arange(len(chunk)), best]
    return Nearest(outliers, topics, similarity)


def allowed_outliers(n_documents: int, max_share: float) -> int:
    """The most outliers ``max_share`` of ``n_documents`` allows (0.29 of 100 is 29, not 28.999...)."""
    return math.floor(max_share * n_documents + 1e-9)


def threshold_for_share(similarity: np.ndarray, n_documents: int, max_share: float, threshold: float) -> float:
    """The highest threshold, at most ``threshold``, that leaves at most ``max_share`` of the documents outliers.

    ``similarity`` (m,) holds each outlier's cosine to its nearest topic (``Nearest.similarity``); an outlier
    joins when its cosine is at least the threshold. Keeping k outliers needs a threshold no higher than the
    (k+1)-th smallest cosine: an order statistic (a quantile of the cosines), found in O(m) by a partition, not
    by trying thresholds. When ``threshold`` already leaves few enough, it is kept (the target only lowers it).
    """
    keep = allowed_outliers(n_documents, max_share)
    if keep >= len(similarity):  # even with none moved the target holds
        return threshold
    needed = float(np.partition(similarity, keep)[keep])
    return min(threshold, needed)


def move(clusters: np.ndarray, nearest: Nearest, threshold: float) -> np.ndarray:
    """(n,) int32 cluster ids with the outliers whose cosine is at least ``threshold`` moved to their nearest
    topic; the others stay -1, clustered documents never move."""
    result = clusters.astype(np.int32, copy=True)
    close = nearest.similarity >= threshold
    result[nearest.outliers[close]] = nearest.topics[close]
    return result


def reduce_outliers(embeddings: np.ndarray, clusters: np.ndarray, threshold: float,
                    max_share: float | None = None) -> tuple[np.ndarray, OutlierReduction]:
    """Outliers moved to their nearest topic at ``threshold``, or at the threshold ``max_share`` needs when
    that is lower. Returns the (n,) int32 cluster ids and what was done. With no topic to join (HDBSCAN found
    none), every outlier stays and a target is not met."""
    nearest = nearest_topics(embeddings, clusters)
    if max_share is not None and len(nearest.outliers):
        threshold = threshold_for_share(nearest.similarity, len(clusters), max_share, threshold)
    result = move(clusters, nearest, threshold)
    n = len(clusters)
    left = int((result < 0).sum())
    met = None if max_share is None else left <= allowed_outliers(n, max_share)
    return result, OutlierReduction(float(threshold), max_share, left / n if n else 0.0, met)


def reassign_outliers(embeddings: np.ndarray, clusters: np.ndarray, threshold: float) -> np.ndarray:
    """Cluster ids with each outlier moved to the cluster whose centroid is most similar to it.

    Args:
        embeddings: (n, dim) unit-length document embeddings.
        clusters: (n,) cluster id per document, -1 for outliers.
        threshold: the least cosine similarity between an outlier and a centroid for the move.

    Returns:
        (n,) int32 cluster ids; outliers below the threshold stay -1. Clustered documents never move.
    """
    return move(clusters, nearest_topics(embeddings, clusters), threshold)
