"""Stage 6: a second level above the topics: 5-15 broad themes, grouped by the topics' embeddings."""

from __future__ import annotations

import math

import numpy as np
from sklearn.cluster import AgglomerativeClustering

MIN_THEMES, MAX_THEMES = 5, 15


def topic_vectors(embeddings: np.ndarray, doc_topics: np.ndarray, topics: list[int]) -> np.ndarray:
    """(n_topics, dim) unit-length mean embedding of each topic's documents, in the order of ``topics``."""
    vectors = np.stack([embeddings[doc_topics == t].mean(axis=0) for t in topics])
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def number_of_themes(n_topics: int) -> int:
    """About sqrt(2n) themes, kept within 5..15; 0 when there are too few topics to group (under 8)."""
    if n_topics < 8:
        return 0
    return int(min(MAX_THEMES, max(MIN_THEMES, round(math.sqrt(2 * n_topics)))))


def group_topics(vectors: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """A theme id per topic (row of ``vectors``), themes numbered by their document count, largest first;
    an empty array when there are too few topics to group."""
    k = number_of_themes(len(vectors))
    if k == 0:
        return np.array([], dtype=np.int32)
    raw = AgglomerativeClustering(n_clusters=k, metric="cosine", linkage="average").fit_predict(vectors)
    weight = {c: sizes[raw == c].sum() for c in np.unique(raw)}
    order = sorted(weight, key=lambda c: (-weight[c], c))
    renumber = {c: i for i, c in enumerate(order)}
    return np.array([renumber[c] for c in raw], dtype=np.int32)
