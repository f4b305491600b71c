"""New documents into a finished job's topics, by the rule BERTopic's ``transform`` applies to topicq's models."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics.pairwise import cosine_similarity


def assign(embeddings: np.ndarray, topic_matrix: np.ndarray, ids: Sequence[int],
           outliers: int) -> tuple[np.ndarray, np.ndarray]:
    """The topic of each new document and how similar it is to that topic.

    The rule (BERTopic 0.17's ``transform`` for a model fitted with ``BaseCluster``, as topicq fits them): the
    cosine similarity of each document embedding with each topic embedding, the most similar topic's row,
    minus ``outliers``. Row 0 is the outlier topic -1 when ``outliers`` is 1, so a document can land in -1 when
    it is closest to the outliers' mean embedding. sklearn's ``cosine_similarity`` on the same float32 inputs
    keeps the service and a loaded model in agreement to the last bit.

    Args:
        embeddings: shape (m, d), the new documents' embeddings from the job's embedding model.
        topic_matrix: shape (k, d), the topic embeddings, row i for topic ``ids[i]`` (``topic_embeddings``).
        ids: the k topic ids, lowest first: ``-outliers, ..., k - 1 - outliers``.
        outliers: 1 when row 0 is the outlier topic, else 0.

    Returns:
        (topics, similarity): shape (m,) int32 topic ids, and shape (m,) float32 cosine similarities to them.
    """
    if list(ids) != list(range(-outliers, len(topic_matrix) - outliers)):
        raise ValueError(f"topic ids {list(ids)} are not the rows of a BERTopic model with outliers={outliers}")
    if len(embeddings) == 0:  # sklearn refuses an empty array
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
    similarity = cosine_similarity(embeddings, topic_matrix)
    best = np.argmax(similarity, axis=1)
    return (best - outliers).astype(np.int32), similarity[np.arange(len(best)), best].astype(np.float32)
