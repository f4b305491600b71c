"""Outlier reduction with a target share of outliers: the pure function on hand-made vectors, and the cluster
stage on real news articles with the real embedding model."""

import math

import numpy as np
import pytest

from worker.pipeline.outliers import allowed_outliers, reassign_outliers, reduce_outliers, threshold_for_share


def unit(cosine: float, topic: int) -> list[float]:
    """A 2-D unit vector whose cosine to topic ``topic``'s axis is ``cosine`` (and negative to the other's)."""
    other = -math.sqrt(1 - cosine**2)
    return [cosine, other] if topic == 0 else [other, cosine]


# Topic 0 along x, topic 1 along y (two documents each); six outliers, each nearest the topic named beside it.
COSINES = [(0.9, 0), (0.6, 0), (0.4, 0), (0.2, 0), (-0.5, 0), (0.5, 1)]
EMBEDDINGS = np.array([[1, 0], [1, 0], [0, 1], [0, 1]] + [unit(c, t) for c, t in COSINES], dtype=np.float32)
CLUSTERS = np.array([0, 0, 1, 1] + [-1] * len(COSINES))


def test_the_default_threshold_is_kept_when_it_already_meets_the_target():
    """At 0.3, the outliers at 0.2 and -0.5 stay: 2 of 10 documents, which a target of 20% (or more) allows."""
    for target in (0.2, 0.5):
        topics, reduction = reduce_outliers(EMBEDDINGS, CLUSTERS, 0.3, target)
        assert reduction.threshold == 0.3 and reduction.share == 0.2 and reduction.met is True
        assert topics.tolist() == reassign_outliers(EMBEDDINGS, CLUSTERS, 0.3).tolist()
        assert topics.tolist()[4:] == [0, 0, 0, -1, -1, 1]


def test_the_threshold_is_lowered_to_meet_the_target_exactly():
    """10% of 10 documents is one outlier: the threshold drops to the second-lowest cosine, 0.2; 15% allows one too."""
    for target in (0.1, 0.15):
        topics, reduction = reduce_outliers(EMBEDDINGS, CLUSTERS, 0.3, target)
        assert reduction.threshold == pytest.approx(0.2, abs=1e-6)
        assert reduction.share == 0.1 and reduction.met is True and reduction.target == target
        assert topics.tolist() == [0, 0, 1, 1, 0, 0, 0, 0, -1, 1]


def test_a_target_of_zero_puts_every_outlier_in_its_nearest_topic():
    topics, reduction = reduce_outliers(EMBEDDINGS, CLUSTERS, 0.3, 0.0)
    assert reduction.threshold == pytest.approx(-0.5, abs=1e-6) and reduction.share == 0.0 and reduction.met
    assert topics.tolist() == [0, 0, 1, 1, 0, 0, 0, 0, 0, 1]


def test_without_a_target_the_threshold_alone_decides_and_nothing_is_judged():
    topics, reduction = reduce_outliers(EMBEDDINGS, CLUSTERS, 0.45)
    assert topics.tolist()[4:] == [0, 0, -1, -1, -1, 1]
    assert reduction.threshold == 0.45 and reduction.target is None and reduction.met is None
    assert reduction.share == 0.3


def test_with_no_topic_to_join_the_outliers_stay_and_the_target_is_not_met():
    topics, reduction = reduce_outliers(EMBEDDINGS, np.full(len(CLUSTERS), -1), 0.3, 0.05)
    assert (topics == -1).all() and reduction.share == 1.0 and reduction.met is False


def test_the_threshold_is_an_order_statistic_of_the_cosines_and_ties_leave_fewer():
    cosines = np.array([0.5, 0.1, 0.1, 0.7, 0.3], dtype=np.float32)
    assert threshold_for_share(cosines, 100, 0.01, 0.9) == pytest.approx(0.1)  # one may stay: both 0.1s join
    assert threshold_for_share(cosines, 100, 0.02, 0.9) == pytest.approx(0.3)
    assert threshold_for_share(cosines, 100, 0.03, 0.9) == pytest.approx(0.5)
    assert threshold_for_share(cosines, 100, 0.05, 0.9) == 0.9  # five may stay: nothing to lower
    assert allowed_outliers(100, 0.29) == 29 and allowed_outliers(500, 0.05) == 25 and allowed_outliers(7, 0.1) == 0


@pytest.fixture(scope="module")
def news(embedder):
    """About 500 news articles (every third line, across sections) and their embeddings (the first 256 tokens)."""
    from tests.conftest import read_corpus

    texts = [r["text"] for r in read_corpus("news_sections.jsonl", limit=500, every=3)]
    embeddings = embedder.encode(texts, normalize_embeddings=True, convert_to_numpy=True, batch_size=32)
    return texts, np.asarray(embeddings, dtype=np.float32)


def test_a_real_run_meets_the_target_share_and_reports_the_threshold_it_reached(news, embedder):
    """On news articles the default threshold (0.3) leaves a few outliers; a target of 0.5% lowers it until at
    most 2 of the 500 are left, and the job's scores say so."""
    from shared.schemas import DEFAULT_OUTLIER_THRESHOLD, JobParams
    from worker.pipeline.run import PipelineConfig, run_pipeline
    from worker.results import job_scores

    texts, embeddings = news
    params = JobParams(max_outlier_share=0.005, generate_labels=False)
    result = run_pipeline(texts, params, embedder, None, PipelineConfig(), embeddings=embeddings)

    default, _ = reduce_outliers(embeddings, result.original_doc_topics, DEFAULT_OUTLIER_THRESHOLD)
    assert (default < 0).sum() > 2, "the target should need more than the default threshold here"
    assert result.n_outliers <= 2 and result.outliers.met
    assert result.outliers.threshold < DEFAULT_OUTLIER_THRESHOLD
    scores = job_scores(result, params)
    assert scores["outlier_share"] <= 0.005 and scores["outlier_target_met"] is True
    assert scores["max_outlier_share"] == 0.005 and scores["outlier_threshold"] == round(result.outliers.threshold, 4)
    assert scores["outlier_share_before_reduction"] > scores["outlier_share"]
