import numpy as np
import pytest

from worker.pipeline.scores import diversity, npmi_coherence, score


def test_diversity_is_the_share_of_unique_top_words():
    assert diversity([["a", "b"], ["c", "d"]]) == 1.0
    assert diversity([["a", "b"], ["a", "c"]]) == 0.75


def test_npmi_rewards_words_that_occur_together():
    texts = ["cat dog", "cat dog", "fish bird", "fish bird", "cat bird"]
    together = npmi_coherence([["cat", "dog"]], texts)
    apart = npmi_coherence([["dog", "fish"]], texts)
    assert together > 0.5 and apart == -1.0
    # p(cat,dog)=2/5, p(cat)=3/5, p(dog)=2/5: log(0.4 / 0.24) / -log(0.4)
    assert together == pytest.approx(np.log(0.4 / 0.24) / -np.log(0.4))


def test_score_counts_outliers():
    scores = score([["cat", "dog"]], np.array([0, 0, -1, -1]), ["cat dog", "cat", "x", "y"])
    assert scores.outlier_share == 0.5 and scores.diversity == 1.0


def test_outliers_join_the_nearest_topic_only_when_close_enough():
    from worker.pipeline.outliers import reassign_outliers

    embeddings = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [0.9, 0.1], [-1, 0]], dtype=np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    clusters = np.array([0, 0, 1, 1, -1, -1])
    assert reassign_outliers(embeddings, clusters, threshold=0.5).tolist() == [0, 0, 1, 1, 0, -1]
    assert reassign_outliers(embeddings, clusters, threshold=1.0).tolist() == [0, 0, 1, 1, -1, -1]


def test_topics_group_into_themes_by_their_embeddings():
    from worker.pipeline.themes import group_topics, number_of_themes

    rng = np.random.default_rng(0)
    axes = np.eye(6)[:5]  # five well-separated directions, two topics near each
    vectors = np.concatenate([axes + 0.05 * rng.standard_normal(axes.shape) for _ in range(2)])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    sizes = np.array([50, 40, 30, 20, 10] * 2)
    themes = group_topics(vectors, sizes)
    assert themes.tolist() == [0, 1, 2, 3, 4] * 2  # pairs share a theme; the largest theme is number 0
    assert number_of_themes(7) == 0 and number_of_themes(10) == 5 and number_of_themes(60) == 11 and number_of_themes(500) == 15


@pytest.mark.parametrize("seed", range(10))
def test_many_themes_group_into_three_to_six_balanced_domains(seed):
    """8-15 themes from a few directions plus noise: 3..6 domains, none over half of the themes, none of one,
    numbered by documents, largest first."""
    from worker.pipeline.themes import group_themes, number_of_domains

    rng = np.random.default_rng(seed)
    for n in range(8, 16):
        centres = rng.standard_normal((int(rng.integers(2, 6)), 32))
        vectors = centres[rng.integers(0, len(centres), n)] + rng.uniform(0.1, 1.0) * rng.standard_normal((n, 32))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        sizes = rng.integers(10, 500, n)
        domains = group_themes(vectors.astype(np.float32), sizes)
        counts = np.bincount(domains)
        assert 3 <= len(counts) <= 6 and counts.min() >= 2 and counts.max() <= n // 2, (n, counts)
        weights = [sizes[domains == d].sum() for d in range(len(counts))]
        assert weights == sorted(weights, reverse=True)
    assert [number_of_domains(n) for n in (5, 7, 8, 15, 36, 100)] == [0, 0, 3, 4, 6, 6]


def test_few_themes_get_no_domains_and_a_theme_vector_is_its_topics_size_weighted_mean():
    from worker.pipeline.themes import group_themes, theme_vectors

    assert group_themes(np.eye(7, dtype=np.float32), np.ones(7)).tolist() == []
    topics = np.array([[1, 0], [0, 1], [0, 1]], dtype=np.float32)
    themes = theme_vectors(topics, np.array([3, 1, 5]), np.array([0, 0, 1]))
    expected = np.array([3, 1]) / np.hypot(3, 1)
    assert np.allclose(themes, [expected, [0, 1]]) and themes.dtype == np.float32


@pytest.mark.parametrize("seed", range(5))
def test_themes_are_balanced_with_no_theme_of_most_topics_or_of_one(seed):
    """16 topics that all share one direction (as sentence embeddings do) plus their own noise: average linkage
    chains most of them into one theme; each theme here holds 2..8 topics."""
    from sklearn.cluster import AgglomerativeClustering

    from worker.pipeline.themes import group_topics, number_of_themes

    rng = np.random.default_rng(seed)
    vectors = 0.8 * np.ones((16, 64)) / 8 + rng.standard_normal((16, 64)) * rng.uniform(0.05, 0.3, (16, 1))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    sizes = rng.integers(20, 200, 16)
    chained = np.bincount(AgglomerativeClustering(n_clusters=number_of_themes(16), metric="cosine",
                                                  linkage="average").fit_predict(vectors))
    assert chained.max() > 8 or chained.min() == 1, "the data should defeat average linkage"

    themes = group_topics(vectors, sizes)
    counts = np.bincount(themes)
    assert counts.min() >= 2 and counts.max() <= 8, counts
    weights = [sizes[themes == t].sum() for t in range(len(counts))]
    assert weights == sorted(weights, reverse=True)  # numbered largest first, no gaps
