"""Stage 6: the levels above the topics: 5-15 broad themes, grouped by the topics' embeddings, and with 8 themes or
more 3-6 domains above the themes, grouped by the themes' embeddings."""

from __future__ import annotations

import math

import numpy as np
from sklearn.cluster import AgglomerativeClustering

MIN_THEMES, MAX_THEMES = 5, 15
MIN_DOMAINS, MAX_DOMAINS = 3, 6


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
    """A theme id per topic (row of ``vectors``, unit length), themes numbered by their document count, largest
    first; an empty array when there are too few topics to group.

    Ward linkage (on unit vectors, Euclidean distance orders pairs as cosine does) rather than average linkage,
    which chains loosely related topics into one theme: on 16 topics of application descriptions one theme took
    10. Then ``balanced``: no theme holds more than half of the topics, and none holds a single one."""
    return _grouped(vectors, sizes, number_of_themes(len(vectors)))


def number_of_domains(n_themes: int) -> int:
    """About sqrt(n) domains, kept within 3..6; 0 under 8 themes, where a third level would add little (a job
    needs about 32 topics for 8 themes, so only large jobs get domains)."""
    if n_themes < 8:
        return 0
    return int(min(MAX_DOMAINS, max(MIN_DOMAINS, round(math.sqrt(n_themes)))))


def groups(assignment: np.ndarray) -> int:
    """How many groups an assignment (the theme of each topic, or the domain of each theme) makes."""
    return int(assignment.max()) + 1 if len(assignment) else 0


def theme_vectors(vectors: np.ndarray, sizes: np.ndarray, theme_of: np.ndarray) -> np.ndarray:
    """(n_themes, dim) float32 unit-length vector of each theme: the mean of its topics' unit vectors (rows of
    ``vectors``, (n_topics, dim)) weighted by their document counts ``sizes`` (n_topics,), normalised."""
    out = np.zeros((groups(theme_of), vectors.shape[1] if vectors.ndim == 2 else 0), dtype=np.float32)
    np.add.at(out, theme_of, vectors * np.asarray(sizes, dtype=np.float32)[:, None])
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def group_themes(vectors: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """A domain id per theme (row of ``vectors``, unit length, from ``theme_vectors``; ``sizes``: documents per
    theme), domains numbered by their document count, largest first; an empty array under 8 themes.

    As ``group_topics``, one level up: Ward linkage, then no domain over half of the themes and none of one, and
    never fewer than 3 (a lone theme whose folding would leave 2 takes its nearest theme from a larger domain)."""
    return _grouped(vectors, sizes, number_of_domains(len(vectors)), min_groups=MIN_DOMAINS)


def _grouped(vectors: np.ndarray, sizes: np.ndarray, k: int, min_groups: int = 2) -> np.ndarray:
    """``k`` groups of the rows (Ward, then ``balanced``), numbered by the sum of their rows' ``sizes``, largest
    first; an empty array when ``k`` is 0."""
    if k == 0:
        return np.array([], dtype=np.int32)
    raw = balanced(vectors, AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(vectors),
                   min_groups=min_groups)
    weight = {c: sizes[raw == c].sum() for c in np.unique(raw)}
    order = sorted(weight, key=lambda c: (-weight[c], c))
    renumber = {c: i for i, c in enumerate(order)}
    return np.array([renumber[c] for c in raw], dtype=np.int32)


MAX_THEME_SHARE = 0.5  # of the topics, in any one theme


def balanced(vectors: np.ndarray, groups: np.ndarray, max_share: float = MAX_THEME_SHARE,
             min_groups: int = 2) -> np.ndarray:
    """``groups`` (a group id per row) with every group above ``max_share`` of the rows split in two (Ward again),
    and then every group of one row moved to the group whose mean vector is nearest, among those with room; where
    none has room, or moving it would leave fewer than ``min_groups`` groups, it takes instead the row nearest to
    it from a group of three rows or more."""
    groups = np.asarray(groups).copy()
    cap = max(2, int(max_share * len(groups)))
    for _ in range(len(groups)):
        ids, counts = np.unique(groups, return_counts=True)
        if counts.max() <= cap:
            break
        members = np.flatnonzero(groups == ids[counts.argmax()])
        halves = AgglomerativeClustering(n_clusters=2, linkage="ward").fit_predict(vectors[members])
        groups[members[halves == 1]] = groups.max() + 1
    ids, counts = np.unique(groups, return_counts=True)
    for lonely in ids[counts == 1]:
        if (groups == lonely).sum() != 1:  # another lonely row joined it
            continue
        row = int(np.flatnonzero(groups == lonely)[0])
        ids, counts = np.unique(groups, return_counts=True)
        others = [g for g, c in zip(ids, counts) if g != lonely and c < cap]
        if others and len(ids) > min_groups:
            means = np.stack([vectors[groups == g].mean(axis=0) for g in others])
            closeness = means @ vectors[row] / np.maximum(np.linalg.norm(means, axis=1), 1e-12)
            groups[row] = others[int(closeness.argmax())]
            continue
        donors = np.flatnonzero(np.isin(groups, ids[counts >= 3]))
        if len(donors):  # a pair of its own, the donor group left with two rows or more
            groups[donors[int((vectors[donors] @ vectors[row]).argmax())]] = lonely
    return groups
