"""The cluster stage's large-corpus paths on small inputs: one neighbour graph for both UMAP fits, progress
through UMAP's epochs and through steps without a callback, the bounded keyword vocabulary, chunked outliers."""

import threading
import time

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from tests.conftest import CHAPTERS, read_corpus


@pytest.fixture(scope="module")
def chapters(embedder):
    """150 paragraphs of each of three chapters of the Python docs, their embeddings and chapter numbers."""
    records = read_corpus("python_docs.jsonl")
    texts, truth = [], []
    for number, chapter in enumerate(CHAPTERS):
        picked = [r["text"] for r in records if r["label"] == chapter][:150]
        texts += picked
        truth += [number] * len(picked)
    embeddings = embedder.encode(texts, normalize_embeddings=True, convert_to_numpy=True, batch_size=64)
    return texts, np.asarray(embeddings, dtype=np.float32), np.array(truth)


def _clusters(reduced: np.ndarray) -> np.ndarray:
    from worker.pipeline.cluster import cluster

    return cluster(reduced, 15, 3)[1]


def _neighbours_kept(embeddings: np.ndarray, coords: np.ndarray, k: int = 10) -> float:
    """Mean share of each document's k nearest neighbours (cosine, all dimensions) that are among its k
    nearest on the map."""
    similar = embeddings @ embeddings.T
    np.fill_diagonal(similar, -np.inf)
    near = np.argsort(-similar, axis=1)[:, :k]
    distance = ((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(distance, np.inf)
    on_map = np.argsort(distance, axis=1)[:, :k]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(near, on_map)]))


@pytest.fixture(scope="module")
def shared_run(chapters):
    """The shared-graph reduction (forced at this size) with every progress report recorded."""
    from worker.pipeline.reduce import reduce

    _, embeddings, _ = chapters
    reports = []
    reduced, coords = reduce(embeddings, seed=42, progress=lambda *report: reports.append(report), shared_from=0)
    return reduced, coords, reports


def test_one_neighbour_graph_gives_the_topics_and_map_of_two_separate_fits(chapters, shared_run):
    """And the two fits, run side by side on their threads, give what each gives alone on that graph."""
    from worker.pipeline.reduce import fit_umap, map_coordinates, neighbour_graph

    _, embeddings, truth = chapters
    reduced, coords, _ = shared_run
    assert reduced.shape == (len(embeddings), 5) and coords.shape == (len(embeddings), 2)
    assert reduced.dtype == coords.dtype == np.float32
    knn = neighbour_graph(embeddings)
    assert np.array_equal(fit_umap(embeddings, knn=knn)[1], reduced)
    assert np.array_equal(map_coordinates(embeddings, knn=knn), coords)
    _, separate = fit_umap(embeddings)  # what each fit did on its own graph before
    separate_coords = map_coordinates(embeddings)

    shared_nmi = normalized_mutual_info_score(truth, _clusters(reduced))
    separate_nmi = normalized_mutual_info_score(truth, _clusters(separate))
    assert shared_nmi > 0.5 and shared_nmi >= separate_nmi - 0.05, (shared_nmi, separate_nmi)
    kept, separate_kept = _neighbours_kept(embeddings, coords), _neighbours_kept(embeddings, separate_coords)
    assert kept > 0.3 and kept >= separate_kept - 0.05, (kept, separate_kept)


def test_umaps_epochs_run_without_the_gil_and_give_umaps_own_result(chapters, monkeypatch):
    """What lets the two fits use both cores must not change a job's topics: a fit with the GIL released is the
    fit UMAP's own compilation of the same function gives, bit for bit."""
    import numba
    from umap import layouts

    from worker.pipeline.reduce import fit_umap, release_gil_in_epochs

    _, embeddings, _ = chapters
    assert release_gil_in_epochs(), "this umap-learn moved its epoch function: the fits take turns on the GIL"
    assert layouts._nb_optimize_layout_euclidean_single_epoch.targetoptions["nogil"] is True
    released = fit_umap(embeddings[:300])[1]
    monkeypatch.setattr(layouts, "_nb_optimize_layout_euclidean_single_epoch",  # as umap-learn compiles it
                        numba.njit(layouts._optimize_layout_euclidean_single_epoch, fastmath=True, parallel=False))
    assert np.array_equal(fit_umap(embeddings[:300])[1], released)


def test_progress_moves_through_the_epochs_of_both_fits(shared_run):
    _, _, reports = shared_run
    assert {stage for stage, _, _ in reports} == {"reducing"}
    shares = [done / total for _, done, total in reports]
    assert shares == sorted(shares), "progress never goes back"
    assert shares[-1] == 1.0
    # The search ends at a tenth of the bar; then both fits (side by side) move it through their epochs (UMAP's
    # bar refreshes every 0.5 s: a few reports at this size, hundreds at 600k).
    assert 0.1 in shares and len({s for s in shares if 0.1 < s < 1}) >= 2


def test_the_neighbour_graph_is_the_same_on_one_thread_as_on_two(chapters):
    """The reason the search may use every core while the seed still makes jobs reproducible."""
    import numba

    from worker.pipeline.reduce import neighbour_graph

    _, embeddings, _ = chapters
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = neighbour_graph(embeddings, 15, seed=42)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = neighbour_graph(embeddings, 15, seed=42)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(one[0], two[0]) and np.allclose(one[1], two[1])
    assert (one[0][:, 0] == np.arange(len(embeddings))).all(), "each document is its own first neighbour"


def test_the_scale_benchmarks_recall_scores_a_graph_against_exact_neighbours(chapters):
    """bench/scale_params.py's measure of a neighbour search with fewer trees: the search finds most of each
    document's exact neighbours, and a graph of random documents scores near nothing."""
    from bench.scale_params import recall, unit_rows
    from worker.pipeline.reduce import neighbour_graph

    _, embeddings, _ = chapters
    queries = np.arange(0, len(embeddings), 5)
    indices, _ = neighbour_graph(embeddings, 15, seed=42, n_trees=4)
    assert recall(unit_rows(embeddings), indices, queries) > 0.9
    random = np.random.default_rng(0).integers(0, len(embeddings), size=indices.shape)
    assert recall(unit_rows(embeddings), random, queries) < 0.2


def _wait_for_distinct_shares(reports, n, limit=10.0):
    """A blocking step that lasts until the ticker has reported ``n`` distinct shares (at most ``limit`` s), so
    that a stalled machine does not decide the test."""
    deadline = time.monotonic() + limit
    while len({done / total for _, done, total in list(reports)}) < n and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_step_without_a_callback_still_moves_progress_and_passes_on_a_cancel():
    from worker.pipeline.progress import Ticker
    from worker.claims import JobCancelled

    reports = []
    with Ticker(lambda *report: reports.append(report), "reducing", 0, 350, 1000, expected_s=0.2, interval=0.02):
        _wait_for_distinct_shares(reports, 5)  # a blocking step, like NN-descent
    shares = [done / total for _, done, total in reports]
    assert len(set(shares)) >= 5 and shares == sorted(shares) and shares[-1] == 0.35
    assert max(shares[:-1]) < 0.35, "the ticker never claims the end before the step ends"

    # A step that is one unit of its bar (HDBSCAN: 0 to 1 of the clustering stage's 2) moves too, in between.
    reports.clear()
    with Ticker(lambda *report: reports.append(report), "clustering", 0, 1, 2, expected_s=0.2, interval=0.02):
        _wait_for_distinct_shares(reports, 5)
    shares = [done / total for _, done, total in reports]
    assert len(set(shares)) >= 5 and shares == sorted(shares) and shares[-1] == 0.5 and 0 < shares[-2] < 0.5

    stop, raised = threading.Event(), threading.Event()

    def check():
        if stop.is_set():
            raised.set()
            raise JobCancelled("cancelled during the search")

    with pytest.raises(JobCancelled):
        with Ticker(lambda *_: None, "reducing", 0, 350, 1000, expected_s=1, interval=0.02, check=check):
            stop.set()
            raised.wait(10)  # the step goes on until the ticker's thread has seen the cancel


def test_a_bounded_vocabulary_keeps_each_topics_keywords(chapters, embedder, monkeypatch):
    import worker.pipeline.represent as represent_module

    texts, embeddings, truth = chapters
    full, _, full_model = represent_module.represent(texts, embeddings, truth, embedder)
    words = len(full_model.vectorizer_model.vocabulary_)
    monkeypatch.setattr(represent_module, "MAX_VOCABULARY", words // 2)  # the cap binding hard
    bounded, _, model = represent_module.represent(texts, embeddings, truth, embedder)

    assert len(model.vectorizer_model.vocabulary_) == words // 2
    for before, after in zip(full, bounded):
        assert before.topic == after.topic and len(after.keywords) == 10
        assert len(set(after.keywords) & set(before.keywords)) >= 7, (before.keywords, after.keywords)
    words_used = [w for t in bounded for w in t.keywords]
    assert len(set(words_used)) >= 0.9 * len(words_used), "topics should still not share their keywords"


def test_outliers_compared_in_chunks_go_where_a_single_comparison_sends_them(chapters, monkeypatch):
    import worker.pipeline.outliers as outliers_module

    _, embeddings, truth = chapters
    clusters = truth.copy()
    clusters[::3] = -1  # a third of the documents as outliers
    monkeypatch.setattr(outliers_module, "CHUNK", 7)
    moved = outliers_module.reassign_outliers(embeddings, clusters, threshold=0.3)

    centroids = np.stack([embeddings[clusters == c].mean(axis=0) for c in range(3)])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    similarity = embeddings @ centroids.T
    expected = np.where(similarity.max(axis=1) >= 0.3, similarity.argmax(axis=1), -1)
    assert np.array_equal(moved[clusters < 0], expected[clusters < 0])
    assert np.array_equal(moved[clusters >= 0], clusters[clusters >= 0])
    assert (moved[clusters < 0] == truth[clusters < 0]).mean() > 0.8
