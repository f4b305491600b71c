"""Stage 6: a second level above the topics: 5-15 broad themes, grouped by the topics' embeddings."""

from __future__ import annotations

import math

import numpy as np
from sklearn.cluster import AgglomerativeClustering

MIN_THEMES, MAX_THEMES = 5, 15


def topic_vectors(embeddings: np.ndarray, doc_topics: np.ndarray, topics) -> np.ndarray:
    """(n_topics, dim) float32 unit-length mean embedding of each topic's documents, in the order of ``topics``.

    One pass over the documents (a sparse (n_topics, n) membership matrix times the embeddings), not one
    boolean mask over all n documents per topic: at 600k documents and 500 topics that was 3e8 comparisons
    and a copy of every topic's rows."""
    from scipy.sparse import csr_matrix

    topics = np.asarray(topics)
    row_of = np.full(int(max(doc_topics.max(initial=-1), topics.max(initial=-1))) + 2, -1, dtype=np.int64)
    row_of[topics + 1] = np.arange(len(topics))  # +1: topic -1 (outliers) has slot 0
    rows = row_of[doc_topics + 1]
    member = rows >= 0
    membership = csr_matrix((np.ones(member.sum(), dtype=np.float32), (rows[member], np.flatnonzero(member))),
                            shape=(len(topics), len(doc_topics)))
    vectors = np.asarray(membership @ embeddings, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


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
