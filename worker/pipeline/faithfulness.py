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

SAMPLE_PER_TOPIC = 300  # documents scored per topic, at most: a share to about +-0.06
MAX_SAMPLE = 100_000  # documents scored per job, at most (150 MiB of 384-d vectors): fewer a topic past 333 topics
MIN_PER_TOPIC = 30
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


def sample_documents(doc_topics: np.ndarray, topic_ids: Sequence[int], per_topic: int | None = None,
                     seed: int = 42) -> np.ndarray:
    """Indices (m,) of at most ``per_topic`` documents of each topic in ``topic_ids``, a seeded sample, sorted.

    ``doc_topics`` (n,) int, -1 for outliers (never sampled). ``per_topic`` None: SAMPLE_PER_TOPIC, fewer (not
    under MIN_PER_TOPIC) when the job's topics would take more than MAX_SAMPLE documents."""
    if per_topic is None:
        per_topic = max(MIN_PER_TOPIC, min(SAMPLE_PER_TOPIC, MAX_SAMPLE // max(len(topic_ids), 1)))
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


class NearestLabels:
    """Each document's two most similar labels (cosine; unit vectors), so that replacing one label costs one pass
    over the documents (n, d) instead of one over documents and labels (n, k, d): a re-ask tries a label for each
    flagged topic of a job of thousands."""

    def __init__(self, doc_embeddings: np.ndarray, label_embeddings: np.ndarray, block: int = BLOCK) -> None:
        self.docs = np.asarray(doc_embeddings, dtype=np.float32)  # (n, d)
        self.labels = np.array(label_embeddings, dtype=np.float32)  # (k, d), a copy: replace() changes it
        self.block = block
        n = len(self.docs)
        self.best = np.zeros(n, dtype=np.int64)  # (n,) index of the most similar label
        self.second = np.full(n, -1, dtype=np.int64)  # (n,) of the next one; -1 with a single label
        self.best_sim = np.zeros(n, dtype=np.float32)
        self.second_sim = np.full(n, -np.inf, dtype=np.float32)
        self._fill(np.arange(n))

    def _fill(self, rows: np.ndarray) -> None:
        """Top two labels of the documents ``rows`` (m,), computed afresh ``block`` documents at a time."""
        k = len(self.labels)
        for start in range(0, len(rows), self.block):
            idx = rows[start : start + self.block]
            sims = self.docs[idx] @ self.labels.T  # (b, k)
            if k == 1:
                self.best[idx], self.best_sim[idx] = 0, sims[:, 0]
                continue
            top = np.argpartition(-sims, 1, axis=1)[:, :2]  # the two most similar, in either order
            top_sims = np.take_along_axis(sims, top, axis=1)
            swap = (top_sims[:, 1] > top_sims[:, 0]) | ((top_sims[:, 1] == top_sims[:, 0]) & (top[:, 1] < top[:, 0]))
            top[swap], top_sims[swap] = top[swap][:, ::-1], top_sims[swap][:, ::-1]
            self.best[idx], self.best_sim[idx] = top[:, 0], top_sims[:, 0]
            self.second[idx], self.second_sim[idx] = top[:, 1], top_sims[:, 1]

    def _sims(self, vector: np.ndarray) -> np.ndarray:
        vector = np.asarray(vector, dtype=np.float32)
        return np.concatenate([self.docs[start : start + self.block] @ vector
                               for start in range(0, len(self.docs), self.block)] or [np.zeros(0, np.float32)])

    def trial(self, i: int, vector: np.ndarray) -> np.ndarray:
        """Each document's most similar label (n,) were label ``i`` replaced by ``vector`` (d,); nothing changes."""
        sims = self._sims(vector)
        nearest = self.best.copy()
        mine = self.best == i
        nearest[mine] = np.where(sims[mine] >= self.second_sim[mine], i, self.second[mine])
        nearest[~mine & (sims > self.best_sim)] = i
        return nearest

    def replace(self, i: int, vector: np.ndarray) -> None:
        """Label ``i`` becomes ``vector`` (d,): documents that had it among their two are computed afresh, the
        others compare it with their two."""
        sims = self._sims(vector)
        self.labels[i] = vector
        affected = (self.best == i) | (self.second == i)
        first = ~affected & (sims > self.best_sim)
        self.second[first], self.second_sim[first] = self.best[first], self.best_sim[first]
        self.best[first], self.best_sim[first] = i, sims[first]
        runner_up = ~affected & ~first & (sims > self.second_sim)
        self.second[runner_up], self.second_sim[runner_up] = i, sims[runner_up]
        self._fill(np.flatnonzero(affected))


def nearest_labels(doc_embeddings: np.ndarray, label_embeddings: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """For each document (n, d) the index (n,) of its most similar label (k, d); both unit vectors (cosine)."""
    if not len(label_embeddings):
        return np.zeros(len(doc_embeddings), dtype=np.int64)
    return NearestLabels(doc_embeddings, label_embeddings, block).best


def agreement(nearest: np.ndarray, own: np.ndarray, k: int) -> Faithfulness:
    """Faithfulness from each document's nearest label (n,) and its own topic's (n,), both indices into k topics."""
    counts = np.bincount(own, minlength=k)
    hit = nearest == own
    hits = np.bincount(own[hit], minlength=k)
    # The competitor of a topic: the other label that took most of its documents (ties: the first topic).
    pairs, taken = np.unique(own[~hit] * k + nearest[~hit], return_counts=True)
    competitors = np.full(k, -1, dtype=np.int64)
    if len(pairs):
        topic = pairs // k
        order = np.lexsort((-taken, topic))
        first = order[np.r_[True, topic[order][1:] != topic[order][:-1]]]
        competitors[topic[first]] = pairs[first] % k
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)
    total = int(counts.sum())
    return Faithfulness(scores, competitors, counts, float(hits.sum() / total) if total else None)


def own_topics(doc_topics: np.ndarray, topic_ids: Sequence[int]) -> np.ndarray:
    """Each document's topic as its index (n,) in ``topic_ids``; -1 where the topic is not among them (outliers)."""
    return _positions(np.asarray(doc_topics), list(topic_ids))


def faithfulness(doc_embeddings: np.ndarray, doc_topics: np.ndarray, topic_ids: Sequence[int],
                 label_embeddings: np.ndarray, block: int = BLOCK) -> Faithfulness:
    """Scores of the labels (k, d), one per topic of ``topic_ids`` (k,), from the documents (n, d) and their
    topics (n,) (-1: an outlier, left out). Pass a sample of the documents (``sample_documents``) for scale."""
    ids = list(topic_ids)
    own = own_topics(doc_topics, ids)
    kept = own >= 0
    nearest = nearest_labels(np.asarray(doc_embeddings)[kept], label_embeddings, block)
    return agreement(nearest, own[kept], len(ids))


def most_flagged(n_topics: int, max_share: float = MAX_FLAGGED_SHARE) -> int:
    """How many of ``n_topics`` topics can be asked again at most: ``max_share`` of them, at least one."""
    return max(1, int(max_share * n_topics)) if n_topics else 0


def flagged(result: Faithfulness, threshold: float = POOR, max_share: float = MAX_FLAGGED_SHARE) -> list[int]:
    """Indices of the topics to ask again: scored under ``threshold`` with a competitor, worst first, at most
    ``most_flagged`` of them (at least one when any is poor)."""
    poor = [i for i, s in enumerate(result.scores) if s == s and s < threshold and result.competitors[i] >= 0]
    poor.sort(key=lambda i: (result.scores[i], i))
    return poor[: most_flagged(len(result.scores), max_share)]


def _positions(doc_topics: np.ndarray, ids: list[int]) -> np.ndarray:
    """Each document's topic as its index (n,) in ``ids``; -1 where the topic is not among them (outliers)."""
    if not ids:
        return np.full(len(doc_topics), -1, dtype=np.int64)
    keys = np.asarray(ids)
    order = np.argsort(keys, kind="stable")
    at = np.clip(np.searchsorted(keys[order], doc_topics), 0, len(ids) - 1)
    return np.where(keys[order][at] == doc_topics, order[at], -1).astype(np.int64)
