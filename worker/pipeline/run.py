"""The pipeline's stages for one job: embed -> cluster (UMAP, HDBSCAN, representations) -> label, and the
whole of it in one process (``run_pipeline``: benchmarks and tests)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from shared.schemas import DEFAULT_OUTLIER_THRESHOLD, JobParams, default_min_samples, default_min_topic_size
from worker.labeling.base import Labeler
from worker.pipeline.cluster import EVOC, HDBSCAN, cluster, cluster_evoc
from worker.pipeline.embed import DEFAULT_WINDOWS, embed
from worker.pipeline.faithfulness import sample_documents
from worker.pipeline.label import Label, LabelInput, label_topics
from worker.pipeline.levels import DomainResult, Levels, ThemeResult, label_levels, level_steps
from worker.pipeline.outliers import OutlierReduction, reduce_outliers
from worker.pipeline.progress import NO_STEPS, Progress, Steps, Ticker, no_progress
from worker.pipeline.reask import FaithfulLabels, reask_unfaithful
from worker.pipeline.reduce import Check, map_coordinates, reduce
from worker.pipeline.represent import TopicRepresentation, represent
from worker.pipeline.scores import Scores, score
from worker.pipeline.themes import group_themes, group_topics, groups, theme_vectors, topic_vectors

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicResult:
    representation: TopicRepresentation
    label: Label
    theme: int | None = None
    faithfulness: float | None = None  # share of its documents whose nearest label is its own; None: not scored


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
    outliers: OutlierReduction | None = None  # what outlier reduction did; None when it was off
    faithful: FaithfulLabels | None = None  # label faithfulness before and after re-asking; None: not scored
    domains: list[DomainResult] = field(default_factory=list)  # empty under 8 themes

    @property
    def n_outliers(self) -> int:
        return int((self.doc_topics < 0).sum())


@dataclass
class PipelineConfig:
    embedding_batch_size: int = 64
    embedding_windows: int = DEFAULT_WINDOWS
    doc_tokens: int = 60
    doc_count: int = 3  # representative documents in a label prompt
    seed: int = 42  # UMAP's and the representative-document sample's; bench/quality.py varies it
    # worker.pipeline.cluster.CLUSTERERS: bench/quality.py's candidates (fast_hdbscan on the same UMAP, or EVoC on
    # the embeddings with UMAP for the map only); jobs keep hdbscan.
    clusterer: str = HDBSCAN


def label_steps(clusters: Clusters) -> int:
    """The steps of a job's label stage with an LLM (its progress bar): one per topic label, the faithfulness
    re-asks, one per theme and one per domain."""
    return level_steps(len(clusters.representations), groups(clusters.theme_of), groups(clusters.domain_of))


@dataclass
class Clusters:
    """What the CPU stage hands to labelling: topics, their words and documents, the map, the themes."""

    representations: list[TopicRepresentation]
    doc_topics: np.ndarray  # (n,) int32, after outlier reduction when it was on
    original_doc_topics: np.ndarray  # (n,) int32
    coords: np.ndarray  # (n, 2) float32
    theme_of: np.ndarray  # (n_topics,) int32, the theme of each topic; empty when too few topics to group
    scores: Scores | None
    topic_model: object | None = None  # the fitted BERTopic model (not kept in the artifact store; its export is)
    outliers: OutlierReduction | None = None  # what outlier reduction did; None when it was off
    # (n_themes,) int32, the domain of each theme; empty under 8 themes
    domain_of: np.ndarray = field(default_factory=lambda: np.array([], dtype=np.int32))


def cluster_stage(
    texts: list[str],
    embeddings: np.ndarray,
    params: JobParams,
    embedding_model,
    config: PipelineConfig,
    progress: Progress = no_progress,
    check: Check | None = None,
    steps: Steps = NO_STEPS,
) -> Clusters:
    """Everything between embeddings and labels, on the CPU: UMAP (to 5-D and to the 2-D map, on one shared
    neighbour graph), HDBSCAN, outlier reduction, c-TF-IDF with its representations, scores and the themes'
    grouping. ``check`` is called between UMAP's epochs and may raise to stop (a cancelled job); ``steps``
    is told each step's name (bench/scale.py times them)."""
    # HDBSCAN needs both sizes below the number of documents; a larger request means "one topic at most".
    min_size = min(params.min_topic_size or default_min_topic_size(len(texts)), len(texts) - 1)
    min_samples = min(params.min_samples or default_min_samples(min_size), len(texts) - 1)
    if config.clusterer == EVOC:
        with steps.step("umap 2-D"):
            coords = map_coordinates(embeddings, seed=config.seed, check=check)
        progress("clustering", 0, 2)
        with steps.step("evoc"):
            original = cluster_evoc(embeddings, min_size, config.seed)
    else:
        reduced, coords = reduce(embeddings, seed=config.seed, progress=progress, check=check, steps=steps)
        progress("clustering", 0, 2)
        with steps.step("hdbscan"), Ticker(progress, "clustering", 0, 1, 2, expected_s=2e-4 * len(texts)):
            _, original = cluster(reduced, min_size, min_samples, config.clusterer)
    clusters, reduction = original, None
    if params.reduce_outliers:
        # A max_outlier_share lowers the default threshold as far as the target needs (JobParams refuses a
        # target together with a threshold of the user's).
        threshold = DEFAULT_OUTLIER_THRESHOLD if params.outlier_threshold is None else params.outlier_threshold
        with steps.step("outliers"), Ticker(progress, "clustering", 1, 2, 2, expected_s=1e-4 * len(texts)):
            clusters, reduction = reduce_outliers(embeddings, original, threshold, params.max_outlier_share)
    progress("clustering", 2, 2)

    # BERTopic's fit has no callback (its word embeddings for KeyBERT alone take a minute at 600k documents):
    # the ticker keeps the bar moving; about 0.3 ms per document on two cores (bench/scale.py).
    with steps.step("represent"), Ticker(progress, "representing", 0, 8, 10, expected_s=3e-4 * len(texts)):
        representations, doc_topics, topic_model = represent(
            texts, embeddings, clusters, embedding_model, params.nr_topics, seed=config.seed
        )
    original_doc_topics = np.where(original < 0, -1, doc_topics).astype(np.int32)
    analyzer = topic_model.vectorizer_model.build_analyzer() if topic_model is not None else None
    with steps.step("scores"), Ticker(progress, "representing", 8, 9, 10, expected_s=5e-5 * len(texts)):
        scores = score([r.keywords for r in representations], doc_topics, texts, analyzer)
    ids = [r.topic for r in representations]
    with steps.step("themes"):
        theme_of = domain_of = np.array([], dtype=np.int32)
        if ids:
            vectors, sizes = topic_vectors(embeddings, doc_topics, ids), np.array([r.size for r in representations])
            theme_of = group_topics(vectors, sizes)
        if len(theme_of):
            theme_sizes = np.bincount(theme_of, weights=sizes).astype(np.int64)
            domain_of = group_themes(theme_vectors(vectors, sizes, theme_of), theme_sizes)
    progress("representing", 10, 10)
    return Clusters(representations, doc_topics.astype(np.int32), original_doc_topics,
                    np.asarray(coords, dtype=np.float32), np.asarray(theme_of, dtype=np.int32), scores, topic_model,
                    reduction, np.asarray(domain_of, dtype=np.int32))


def label_inputs(
    representations: Sequence[TopicRepresentation], texts: Mapping[int, str] | Sequence[str]
) -> list[LabelInput]:
    """The label stage's input per topic: its keywords and its representative documents' texts."""
    return [LabelInput(r.keywords, [texts[i] for i in r.representative_docs]) for r in representations]


def assemble(clusters: Clusters, labels: list[Label], themes: list[ThemeResult], embeddings: np.ndarray,
             timings: dict[str, float] | None = None, faithful: FaithfulLabels | None = None,
             domains: Sequence[DomainResult] = ()) -> PipelineResult:
    """The job's result; with ``faithful``, its labels (the re-asked ones kept) and scores replace ``labels``."""
    theme_of = clusters.theme_of
    labels = faithful.labels if faithful is not None else labels
    scores = faithful.scores if faithful is not None else [None] * len(labels)
    return PipelineResult(
        topics=[
            TopicResult(r, l, int(theme_of[i]) if len(theme_of) else None, f)
            for i, (r, l, f) in enumerate(zip(clusters.representations, labels, scores))
        ],
        faithful=faithful,
        themes=themes,
        domains=list(domains),
        doc_topics=clusters.doc_topics,
        original_doc_topics=clusters.original_doc_topics,
        scores=clusters.scores,
        coords=clusters.coords,
        embeddings=embeddings,
        timings=timings or {},
        outliers=clusters.outliers,
    )


def run_pipeline(
    texts: list[str],
    params: JobParams,
    embedding_model,
    labeler: Labeler | None,
    config: PipelineConfig,
    progress: Progress = no_progress,
    embeddings: np.ndarray | None = None,
) -> PipelineResult:
    """Topics of ``texts`` in one process, stage after stage (the service runs the same stages as separate
    work items). Pass ``embeddings`` (n, dim) to skip the embedding stage (a cache hit)."""
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
    clusters = cluster_stage(texts, embeddings, params, embedding_model, config, progress)
    lap("clustering")
    labelling = labeler if params.generate_labels else None
    levels = label_stage(clusters, texts, labelling, config, progress, embeddings=embeddings,
                         embedding_model=embedding_model, language=params.label_language)
    lap("labelling")
    log.info("pipeline on %d documents: %s", len(texts), timings)
    return assemble(clusters, levels.labels, levels.themes, embeddings, timings, levels.faithful, levels.domains)


def label_stage(clusters: Clusters, texts, labeler: Labeler | None, config: PipelineConfig,
                progress: Progress = no_progress, embeddings: np.ndarray | None = None,
                embedding_model=None, language: str | None = None) -> Levels:
    """Topic labels, then the levels above them (``label_levels``: faithfulness, with a labeler, ``embeddings``
    (n, dim) and ``embedding_model`` only; themes; domains), with one progress bar over all; every label asked in
    ``language`` when given."""
    ids = [r.topic for r in clusters.representations]
    steps = label_steps(clusters)
    inputs = label_inputs(clusters.representations, texts)
    labels = label_topics(inputs, labeler, doc_budget=config.doc_tokens,
                          doc_count=config.doc_count, progress=lambda stage, done, _total: progress(stage, done, steps),
                          language=language)

    def score(labels: list[Label]) -> FaithfulLabels | None:
        if labeler is None or embeddings is None or embedding_model is None or not ids:
            return None
        picked = sample_documents(clusters.doc_topics, ids, seed=config.seed)
        return faithful_labels(labels, inputs, embeddings[picked], clusters.doc_topics[picked], ids,
                               embedding_model, labeler, config, language=language)

    return label_levels(clusters.representations, labels, clusters.theme_of, clusters.domain_of, labeler, progress,
                        score=score, language=language)


def faithful_labels(labels: list[Label], inputs: Sequence[LabelInput], doc_embeddings: np.ndarray,
                    doc_topics: np.ndarray, topic_ids: Sequence[int], embedding_model, labeler: Labeler,
                    config: PipelineConfig, language: str | None = None) -> FaithfulLabels:
    """``reask_unfaithful`` with the labels embedded by the job's embedding model (one window each)."""
    def embed_labels(texts: list[str]) -> np.ndarray:
        return embed(texts, embedding_model, config.embedding_batch_size, max_windows=1)

    return reask_unfaithful(labels, inputs, doc_embeddings, doc_topics, topic_ids, embed_labels, labeler,
                            doc_budget=config.doc_tokens, doc_count=config.doc_count, language=language)
