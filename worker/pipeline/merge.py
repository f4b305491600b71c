"""Merging topics of a finished job: the merged topics' documents become one cluster, BERTopic's representations
are fitted again on the clusters (``represent``), and every topic that was not merged keeps what a user gave or
saw: its label, its custom label and its theme. Pure: arrays and lists in, dataclasses out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from worker.pipeline.represent import TopicRepresentation, represent
from worker.pipeline.scores import Scores, score

OUTLIER = -1


class MergeError(ValueError):
    """A merge that cannot be made; the message, one line, says why to the user."""


@dataclass(frozen=True)
class TopicState:
    """What a topic carries that a merge must not lose."""

    topic: int
    label: str
    label_source: str
    custom_label: str | None = None
    theme: int | None = None
    provenance: dict | None = None  # the prompts and answers behind ``label``


@dataclass
class MergeResult:
    representations: list[TopicRepresentation]  # every topic afterwards, ids 0..k-1, largest first
    doc_topics: np.ndarray  # (n,) int32, -1 = outlier
    original_doc_topics: np.ndarray | None  # (n,) int32, the given original assignment in the new ids
    merged: int  # the merged topic's new id
    merged_theme: int | None  # the theme of its largest part
    new_of: dict[int, int]  # old topic id -> new id, for every old topic with documents (each part -> merged)
    kept: dict[int, TopicState]  # new id -> the unchanged topic's state (``.topic`` is its old id)
    scores: Scores | None
    topic_model: object  # the fitted BERTopic model


def check_merge(topic_ids: Sequence[int], merge: Sequence[int]) -> None:
    """Raise MergeError unless ``merge`` names at least two distinct topics of ``topic_ids``."""
    if len(merge) < 2:
        raise MergeError(f"merge at least two topics; got {len(merge)}")
    repeated = sorted({t for t in merge if list(merge).count(t) > 1})
    if repeated:
        raise MergeError(f"each topic once: {', '.join(map(str, repeated))} listed more than once")
    unknown = sorted(set(merge) - set(topic_ids))
    if unknown:
        raise MergeError(f"no topic {', '.join(map(str, unknown))} in this job")


def merge_topics(
    texts: list[str],
    embeddings: np.ndarray,
    doc_topics: np.ndarray,
    topics: Sequence[TopicState],
    merge: Sequence[int],
    embedding_model,
    *,
    original_doc_topics: np.ndarray | None = None,
    seed: int = 42,
) -> MergeResult:
    """The job's topics after the topics ``merge`` became one.

    Args:
        texts: the documents, n of them.
        embeddings: shape (n, dim), the job's document embeddings.
        doc_topics: shape (n,), each document's current topic (-1: outlier), moves by the user included.
        topics: the current topics' states, one per topic id.
        merge: the ids to merge, at least two.
        original_doc_topics: shape (n,), the assignment before outlier reduction (same ids), mapped to the new ids;
            a document of a topic that no longer has documents gets its current topic.

    Raises:
        MergeError: fewer than two distinct ids, an unknown id, or merged topics without documents.
    """
    states = {t.topic: t for t in topics}
    check_merge(list(states), merge)
    current = np.asarray(doc_topics, dtype=np.int64)
    parts = np.isin(current, merge)
    if not parts.any():
        raise MergeError("the topics to merge have no documents")
    target = min(merge)
    clusters = np.where(parts, target, current)
    ids = np.unique(clusters[clusters >= 0])  # old ids with documents, the merged one as ``target``
    dense = np.full(len(clusters), OUTLIER, dtype=np.int64)
    dense[clusters >= 0] = np.searchsorted(ids, clusters[clusters >= 0])
    representations, new_topics, topic_model = represent(texts, embeddings, dense, embedding_model, None, seed=seed)

    new_of: dict[int, int] = {}
    for old in ids.tolist():
        members = np.unique(new_topics[clusters == old])
        if len(members) != 1 or members[0] < 0:
            raise RuntimeError(f"topic {old}'s documents were split by the re-fit: {members.tolist()}")
        new_of[int(old)] = int(members[0])
    merged = new_of[int(target)]
    for part in merge:
        new_of[int(part)] = merged
    kept = {new_of[old]: state for old, state in states.items() if old in new_of and old not in merge}

    sizes = {t: int((current == t).sum()) for t in merge}
    largest = max(merge, key=lambda t: (sizes[t], -t))  # ties: the lower id, the larger topic when it was made
    analyzer = topic_model.vectorizer_model.build_analyzer()
    return MergeResult(
        representations=representations,
        doc_topics=new_topics.astype(np.int32),
        original_doc_topics=None if original_doc_topics is None else
        _map_original(np.asarray(original_doc_topics), new_topics, new_of),
        merged=merged,
        merged_theme=states[largest].theme,
        new_of=new_of,
        kept=kept,
        scores=score([r.keywords for r in representations], new_topics, texts, analyzer),
        topic_model=topic_model,
    )


def _map_original(original: np.ndarray, new_topics: np.ndarray, new_of: Mapping[int, int]) -> np.ndarray:
    lookup = np.full(max(int(original.max(initial=OUTLIER)), max(new_of, default=OUTLIER)) + 2, -2, dtype=np.int64)
    lookup[np.array(list(new_of), dtype=np.int64) + 1] = list(new_of.values())
    mapped = lookup[original.astype(np.int64) + 1]  # shifted by one: -1 (outliers) is row 0
    mapped = np.where(mapped == -2, new_topics, mapped)  # its old topic has no documents left: its current one
    return np.where(original < 0, OUTLIER, mapped).astype(np.int32)


def regroup_themes(themes: Sequence[int], topic_themes: Mapping[int, int | None], sizes: Mapping[int, int]
                   ) -> dict[int, tuple[list[int], int]]:
    """Each of ``themes`` (ids) with its topics afterwards: theme -> (topic ids largest first, documents), from
    ``topic_themes`` (new topic id -> its theme) and ``sizes`` (new topic id -> documents). A theme left without
    topics is left out."""
    grouped: dict[int, tuple[list[int], int]] = {}
    for theme in themes:
        members = sorted((t for t, th in topic_themes.items() if th == theme), key=lambda t: (-sizes[t], t))
        if members:
            grouped[theme] = (members, sum(sizes[t] for t in members))
    return grouped


def regroup_domains(domains: Sequence[int], theme_domains: Mapping[int, int | None], sizes: Mapping[int, int]
                    ) -> dict[int, tuple[list[int], int]]:
    """``regroup_themes`` one level up: each of ``domains`` (ids) with its themes afterwards, domain -> (theme ids
    largest first, documents), from ``theme_domains`` (each theme left -> its domain) and ``sizes`` (each theme
    left -> documents). A domain left without themes is left out."""
    return regroup_themes(domains, theme_domains, sizes)
