"""The whole pipeline for one job: embed -> reduce -> cluster -> represent -> label."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from shared.schemas import JobParams, default_min_samples, default_min_topic_size
from worker.labeling.base import Labeler
from worker.pipeline.cluster import cluster
from worker.pipeline.embed import embed
from worker.pipeline.label import Label, LabelInput, label_topics
from worker.pipeline.progress import Progress, no_progress
from worker.pipeline.reduce import fit_umap, map_coordinates
from worker.pipeline.represent import TopicRepresentation, represent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicResult:
    representation: TopicRepresentation
    label: Label


@dataclass
class PipelineResult:
    topics: list[TopicResult]
    doc_topics: np.ndarray  # (n,) int32, -1 = outlier
    coords: np.ndarray  # (n, 2) float32, the document map
    embeddings: np.ndarray  # (n, dim) float32
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage

    @property
    def n_outliers(self) -> int:
        return int((self.doc_topics < 0).sum())


@dataclass
class PipelineConfig:
    embedding_batch_size: int = 64
    doc_tokens: int = 100


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
        embeddings = embed(texts, embedding_model, config.embedding_batch_size, progress)
    progress("embedding", len(texts), len(texts))
    lap("embedding")

    progress("reducing", 0, 2)
    _, reduced = fit_umap(embeddings)
    progress("reducing", 1, 2)
    coords = map_coordinates(embeddings)
    progress("reducing", 2, 2)
    lap("reducing")

    progress("clustering", 0, 1)
    min_size = params.min_topic_size or default_min_topic_size(len(texts))
    _, clusters = cluster(reduced, min_size, params.min_samples or default_min_samples(min_size))
    progress("clustering", 1, 1)
    lap("clustering")

    progress("representing", 0, 1)
    representations, doc_topics, _ = represent(texts, embeddings, clusters, embedding_model, params.nr_topics)
    progress("representing", 1, 1)
    lap("representing")

    inputs = [LabelInput(r.keywords, [texts[i] for i in r.representative_docs]) for r in representations]
    labels = label_topics(
        inputs, labeler if params.generate_labels else None, doc_budget=config.doc_tokens, progress=progress
    )
    lap("labelling")
    log.info("pipeline on %d documents: %s", len(texts), timings)
    return PipelineResult(
        topics=[TopicResult(r, l) for r, l in zip(representations, labels)],
        doc_topics=doc_topics,
        coords=coords,
        embeddings=embeddings,
        timings=timings,
    )
