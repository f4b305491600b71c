"""Label faithfulness: how well each topic's label picks out the topic's own documents among all the job's labels.

Each (sampled) document goes to the label its embedding is most similar to (cosine); a topic's score is the share
of its documents that went to its own label, and the job's score is that share over all of them. Chance is
1 / k for k topics. Pure: arrays in, arrays and dataclasses out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shared.schemas import POOR_FAITHFULNESS

SAMPLE_PER_TOPIC = 300  # documents scored per topic, at most: enough for a share to +-0.06, cheap at 600k documents
BLOCK = 4096  # documents compared with the labels at a time
POOR = POOR_FAITHFULNESS  # chosen from bench.faithfulness's measurements (bench/README.md)
MAX_FLAGGED_SHARE = 0.25  # at most this share of a job's topics is asked again


@dataclass(frozen=True)
class Faithfulness:
    """Per topic (in the order of ``topic_ids``) and for the job."""

    scores: np.ndarray  # (k,) float, share of the topic's scored documents nearest its own label; nan: no documents
    competitors: np.ndarray  # (k,) int, index of the other label that took most of its documents; -1: none did
    counts: np.ndarray  # (k,) int, documents scored per topic
    job: float | None  # document-weighted share over all scored documents; None when none was scored


def sample_documents(doc_topics: np.ndarray, topic_ids: Sequence[int], per_topic: int = SAMPLE_PER_TOPIC,
                     seed: int = 42) -> np.ndarray:
    """Indices (m,) of at most ``per_topic`` documents of each topic in ``topic_ids``, a seeded sample, sorted.

    ``doc_topics`` (n,) int, -1 for outliers (never sampled)."""
    rng = np.random.default_rng(seed)
    order = np.argsort(doc_topics, kind="stable")
    sorted_topics = doc_topics[order]
    picked = []
    for topic in topic_ids:
        lo, hi = np.searchsorted(sorted_topics, [topic, topic + 1])
        members = order[lo:hi]
        if len(members) > per_topic:
            members = rng.choice(members, per_topic, replace=False)
        picked.append(members)
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def nearest_labels(doc_embeddings: np.ndarray, label_embeddings: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """For each document (n, d) the index (n,) of its most similar label (k, d); both unit vectors (cosine)."""
    nearest = np.empty(len(doc_embeddings), dtype=np.int64)
    labels = np.asarray(label_embeddings, dtype=np.float32).T
    for start in range(0, len(doc_embeddings), block):
        part = np.asarray(doc_embeddings[start : start + block], dtype=np.float32)
        nearest[start : start + block] = np.argmax(part @ labels, axis=1)
    return nearest


def faithfulness(doc_embeddings: np.ndarray, doc_topics: np.ndarray, topic_ids: Sequence[int],
                 label_embeddings: np.ndarray, block: int = BLOCK) -> Faithfulness:
    """Scores of the labels (k, d), one per topic of ``topic_ids`` (k,), from the documents (n, d) and their
    topics (n,) (-1: an outlier, left out). Pass a sample of the documents (``sample_documents``) for scale."""
    ids = list(topic_ids)
    k = len(ids)
    own = _positions(np.asarray(doc_topics), ids)
    kept = own >= 0
    nearest = nearest_labels(np.asarray(doc_embeddings)[kept], label_embeddings, block) if k else np.zeros(0, int)
    own = own[kept]
    # confusion[i, j]: documents of topic i whose nearest label is topic j's.
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (own, nearest), 1)
    counts = confusion.sum(axis=1)
    hits = np.diag(confusion).copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)
    others = confusion.copy()
    np.fill_diagonal(others, -1)
    competitors = np.where(others.max(axis=1, initial=0) > 0, others.argmax(axis=1), -1) if k else np.zeros(0, int)
    total = int(counts.sum())
    return Faithfulness(scores, competitors.astype(np.int64), counts, float(hits.sum() / total) if total else None)


def flagged(result: Faithfulness, threshold: float = POOR, max_share: float = MAX_FLAGGED_SHARE) -> list[int]:
    """Indices of the topics to ask again: scored under ``threshold`` with a competitor, worst first, at most
    ``max_share`` of the topics (at least one when any is poor)."""
    poor = [i for i, s in enumerate(result.scores) if s == s and s < threshold and result.competitors[i] >= 0]
    poor.sort(key=lambda i: (result.scores[i], i))
    return poor[: max(1, int(max_share * len(result.scores)))]


def _positions(doc_topics: np.ndarray, ids: list[int]) -> np.ndarray:
    """Each document's topic as its index (n,) in ``ids``; -1 where the topic is not among them (outliers)."""
    if not ids:
        return np.full(len(doc_topics), -1, dtype=np.int64)
    keys = np.asarray(ids)
    order = np.argsort(keys, kind="stable")
    at = np.clip(np.searchsorted(keys[order], doc_topics), 0, len(ids) - 1)
    return np.where(keys[order][at] == doc_topics, order[at], -1).astype(np.int64)
