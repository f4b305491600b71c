"""The whole pipeline for one job: embed -> reduce -> cluster -> represent -> label."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from shared.prompts import THEME_PROMPT
from shared.schemas import DEFAULT_OUTLIER_THRESHOLD, JobParams, default_min_samples, default_min_topic_size
from worker.labeling.base import Labeler
from worker.pipeline.cluster import cluster
from worker.pipeline.embed import DEFAULT_WINDOWS, embed
from worker.pipeline.label import Label, LabelInput, label_topics
from worker.pipeline.outliers import reassign_outliers
from worker.pipeline.progress import Progress, no_progress
from worker.pipeline.reduce import fit_umap, map_coordinates
from worker.pipeline.represent import TopicRepresentation, represent
from worker.pipeline.scores import Scores, score
from worker.pipeline.themes import group_topics, topic_vectors

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicResult:
    representation: TopicRepresentation
    label: Label
    theme: int | None = None


@dataclass(frozen=True)
class ThemeResult:
    theme: int
    label: Label
    topics: list[int]  # topic ids, largest first
    size: int  # documents in its topics


@dataclass
class PipelineResult:
    topics: list[TopicResult]
    themes: list[ThemeResult]  # empty when there are too few topics to group
    doc_topics: np.ndarray  # (n,) int32, -1 = outlier; after outlier reduction when it was on
    original_doc_topics: np.ndarray  # (n,) int32, HDBSCAN's outliers still -1 (same topic ids)
    coords: np.ndarray  # (n, 2) float32, the document map
    embeddings: np.ndarray  # (n, dim) float32
    scores: Scores | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage

    @property
    def n_outliers(self) -> int:
        return int((self.doc_topics < 0).sum())


THEME_TOPICS = 20  # topics shown in a theme's label prompt, at most


@dataclass
class PipelineConfig:
    embedding_batch_size: int = 64
    embedding_windows: int = DEFAULT_WINDOWS
    doc_tokens: int = 60
    doc_count: int = 3  # representative documents in a label prompt
    seed: int = 42  # UMAP's and the representative-document sample's; bench/quality.py varies it


def label_themes(representations, labels, theme_of: np.ndarray, labeler, progress: Progress) -> list[ThemeResult]:
    """One label per theme, from the labels and keywords of its topics (one LLM prompt per theme)."""
    if not len(theme_of):
        return []
    members = [[i for i in range(len(theme_of)) if theme_of[i] == theme] for theme in range(int(theme_of.max()) + 1)]
    inputs = []
    for group in members:
        keywords = list(dict.fromkeys(w for i in group for w in representations[i].keywords[:5]))[:10]
        # The largest topics of the theme (ids run by size), so a prompt fits the LLM's context however many.
        lines = [f"{labels[i].text} ({', '.join(representations[i].keywords[:5])})" for i in group[:THEME_TOPICS]]
        inputs.append(LabelInput(keywords, lines))
    theme_labels = label_topics(inputs, labeler, doc_budget=60, template=THEME_PROMPT, progress=progress)
    return [
        ThemeResult(theme, label, [representations[i].topic for i in group], sum(representations[i].size for i in group))
        for theme, (label, group) in enumerate(zip(theme_labels, members))
    ]


def run_pipeline(
    texts: list[str],
    params: JobParams,
    embedding_model,
    labeler: Labeler | None,
    config: PipelineConfig,
    progress: Progress = no_progress,
    embeddings: np.ndarray | None = None,
) -> PipelineResult:
    """Topics of ``texts``. Pass ``embeddings`` (n, dim) to skip the embedding stage (a cache hit)."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = round(now - clock, 3)
        clock = now

    if embeddings is None:
        embeddings = embed(texts, embedding_model, config.embedding_batch_size, progress, config.embedding_windows)
    progress("embedding", len(texts), len(texts))
    lap("embedding")

    progress("reducing", 0, 2)
    _, reduced = fit_umap(embeddings, seed=config.seed)
    progress("reducing", 1, 2)
    coords = map_coordinates(embeddings, seed=config.seed)
    progress("reducing", 2, 2)
    lap("reducing")

    progress("clustering", 0, 1)
    # HDBSCAN needs both sizes below the number of documents; a larger request means "one topic at most".
    min_size = min(params.min_topic_size or default_min_topic_size(len(texts)), len(texts) - 1)
    min_samples = min(params.min_samples or default_min_samples(min_size), len(texts) - 1)
    _, original = cluster(reduced, min_size, min_samples)
    clusters = original
    if params.reduce_outliers:
        threshold = DEFAULT_OUTLIER_THRESHOLD if params.outlier_threshold is None else params.outlier_threshold
        clusters = reassign_outliers(embeddings, original, threshold)
    progress("clustering", 1, 1)
    lap("clustering")

    progress("representing", 0, 1)
    representations, doc_topics, topic_model = represent(
        texts, embeddings, clusters, embedding_model, params.nr_topics, seed=config.seed
    )
    original_doc_topics = np.where(original < 0, -1, doc_topics).astype(np.int32)
    analyzer = topic_model.vectorizer_model.build_analyzer() if topic_model is not None else None
    scores = score([r.keywords for r in representations], doc_topics, texts, analyzer)
    progress("representing", 1, 1)
    lap("representing")

    ids = [r.topic for r in representations]
    theme_of = (
        group_topics(topic_vectors(embeddings, doc_topics, ids), np.array([r.size for r in representations]))
        if ids else np.array([], dtype=np.int32)
    )
    n_themes = int(theme_of.max()) + 1 if len(theme_of) else 0
    steps = len(ids) + n_themes
    active_labeler = labeler if params.generate_labels else None
    inputs = [LabelInput(r.keywords, [texts[i] for i in r.representative_docs]) for r in representations]
    labels = label_topics(inputs, active_labeler, doc_budget=config.doc_tokens, doc_count=config.doc_count,
                          progress=lambda stage, done, _total: progress(stage, done, steps))
    themes = label_themes(representations, labels, theme_of, active_labeler,
                          progress=lambda stage, done, _total: progress(stage, len(ids) + done, steps))
    lap("labelling")
    log.info("pipeline on %d documents: %s", len(texts), timings)
    return PipelineResult(
        topics=[
            TopicResult(r, l, int(theme_of[i]) if len(theme_of) else None)
            for i, (r, l) in enumerate(zip(representations, labels))
        ],
        themes=themes,
        doc_topics=doc_topics,
        original_doc_topics=original_doc_topics,
        scores=scores,
        coords=coords,
        embeddings=embeddings,
        timings=timings,
    )
