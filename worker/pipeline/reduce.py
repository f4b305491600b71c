"""Stage 2: UMAP, to 5 dimensions for clustering and to 2 for the document map.

From 4,096 documents on (where UMAP itself switches from exact distances to NN-descent), both fits share one
nearest-neighbour graph, searched on both cores, instead of each searching on one; below that, each fit
computes its exact distances as UMAP does, so small jobs give the same topics as before. The seeded epochs,
the larger cost, are single-threaded numba code, run with the GIL released (``release_gil_in_epochs``), so the
two fits run side by side on two threads: the seed, and with it a job's reproducibility, stays, and both cores
work (10,000 PyPI summaries on a 2-core Xeon: 14.0 s for both fits against 24.2 s while the GIL was held).
The shared graph gave the same clusters and map as separate fits on python_docs' 14,740 paragraphs (HDBSCAN
NMI 0.434 vs 0.432 against the labels, map neighbours kept 0.291 vs 0.282). Dropping the seed would make each
fit parallel on its own (about 1.5x on epochs there) at the price of reproducibility; UMAP of the 5-D result
for the map kept slightly more neighbours (0.329) but must wait for the 5-D fit, so the two could not run side
by side; left out.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from worker.pipeline.progress import NO_STEPS, Progress, Steps, Ticker, no_progress

log = logging.getLogger(__name__)

Check = Callable[[], None]  # raises to stop the stage (a cancelled job)
EpochReport = Callable[[int, int], None]  # (epochs done, epochs in all)

N_NEIGHBORS = 15
SMALL = 4096  # UMAP's own threshold: below it, exact pairwise distances instead of NN-descent
_BAR = re.compile(r"(\d+)/(\d+)")


class _EpochBar:
    """A file for UMAP's epoch progress bar that hands each refresh to ``check`` and ``report`` instead of
    printing: UMAP has no callback, and its bar is the one place its optimisation loop yields between epochs.
    The bar is formatted as ``done/total`` (``bar_format``) so that the refresh can be read back."""

    def __init__(self, check: Check | None, report: EpochReport | None) -> None:
        self.check, self.report = check, report
        self.stopped = False  # the check raised: the fit is ending, later refreshes (tqdm's close) do nothing

    def write(self, text: str) -> None:
        if self.stopped:
            return
        if self.check is not None:
            try:
                self.check()
            except BaseException:
                self.stopped = True
                raise
        found = _BAR.search(text)
        if found and self.report is not None:
            self.report(int(found[1]), int(found[2]))

    def flush(self) -> None:
        return None


def search_trees(n: int) -> int:
    """NN-descent's random-projection trees for ``n`` documents: umap.umap_.nearest_neighbors' value."""
    return min(64, 5 + int(round(n**0.5 / 20.0)))


def neighbour_graph(embeddings: np.ndarray, n_neighbors: int = N_NEIGHBORS, seed: int | None = 42,
                    n_trees: int | None = None):
    """UMAP's approximate nearest neighbours of each document (NN-descent with UMAP's own settings), on all
    cores: the search is the same with one thread or two for a given seed (checked in tests/test_scale.py).

    Returns ``(indices, distances)``, UMAP's ``precomputed_knn``: (n, n_neighbors) int32 neighbour ids (each
    document first, as its own neighbour) and (n, n_neighbors) float32 cosine distances. The search index is
    dropped: its random-projection forest holds a 384-d hyperplane per tree node (about 1 GB at 600k
    documents), and UMAP's transform, the one thing that would query it, is never used."""
    from pynndescent import NNDescent

    n = len(embeddings)
    index = NNDescent(
        embeddings,
        n_neighbors=n_neighbors,
        metric="cosine",
        random_state=seed,
        n_trees=n_trees or search_trees(n),
        n_iters=max(5, int(round(np.log2(n)))),
        max_candidates=60,
        low_memory=True,
        n_jobs=-1,
    )
    indices, distances = index.neighbor_graph
    return indices, distances


# From this many documents on, UMAP starts from the PCA of the embeddings instead of its spectral layout: at
# 595,905 PyPI summaries the spectral layout's ARPACK eigensolver ran over 10 minutes without a callback, and
# the two fits' solvers took turns on the GIL (its loop is Python), while PCA takes seconds. The epochs that
# follow shape the result either way; below this size the spectral start is kept (small jobs unchanged).
PCA_INIT_FROM = 100_000


def _umap(n_components: int, n_documents: int, min_dist: float, seed: int | None, check: Check | None = None,
          report: EpochReport | None = None, knn=None):
    from umap import UMAP

    bar = None
    if check is not None or report is not None:
        bar = {"disable": False, "file": _EpochBar(check, report), "mininterval": 0.5, "miniters": 1,
               "bar_format": "{n}/{total}\n"}
    extra = {"precomputed_knn": knn} if knn is not None else {}
    return UMAP(
        n_neighbors=min(N_NEIGHBORS, n_documents - 1),
        n_components=n_components,
        min_dist=min_dist,
        metric="cosine",
        random_state=seed,
        tqdm_kwds=bar,
        init="pca" if n_documents >= PCA_INIT_FROM else "spectral",
        **extra,
    )


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """BLAS (the spectral layout's eigensolver, the PCA init) on one thread while UMAP fits. The 5-D and 2-D fits
    run side by side on the two cores, so more BLAS threads would only oversubscribe them; and two fits calling
    one multi-threaded BLAS at once may each get another share of its pool from run to run, which changes the
    order of floating-point sums and, through the layout, a job's topics: one thread keeps a seeded fit
    the same on every run. (The limit is process-wide, so it is set once around both fits, not per fit.)"""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@contextmanager
def _quiet() -> Iterator[None]:
    """UMAP's warnings about what topicq does on purpose. (Warning filters are process-wide and not thread-safe:
    ``reduce`` sets them once around both fits' threads.)"""
    with warnings.catch_warnings():
        # random_state makes UMAP single-threaded; it says so on every call.
        warnings.filterwarnings("ignore", message="n_jobs value .* overridden", category=UserWarning)
        # The shared graph comes without its search index (see neighbour_graph); UMAP's transform is not used.
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)
        yield


def _free_tqdm_lock() -> None:
    """Release tqdm's process-wide lock where this thread still holds it. tqdm's ``refresh`` acquires it, writes
    the bar and releases it without a ``finally``: when the bar's file raises (a cancel seen between epochs), the
    lock stays held by the fit's thread, and the next tqdm bar of any other thread (the worker's next job)
    waits on it forever. Each lock is released until it says this thread holds it no more."""
    from tqdm import tqdm

    for lock in reversed(tqdm.get_lock().locks):
        while True:
            try:
                lock.release()
            except (AssertionError, RuntimeError, ValueError):  # not (or no longer) held by this thread
                break


_released: bool | None = None  # release_gil_in_epochs' answer, once per process
_release_lock = threading.Lock()


def release_gil_in_epochs() -> bool:
    """Once per process: UMAP's seeded epoch function compiled again, from its own Python source and with its
    own options, plus ``nogil=True``. umap-learn 0.5.12 compiles it with ``numba.njit(fastmath=True,
    parallel=False)``, which holds the GIL through every epoch, so the 5-D and 2-D fits on their two threads took
    turns instead of running at once; without the GIL each fit gives the same result bit for bit
    (tests/test_scale.py). Returns whether the epochs run without the GIL; where a UMAP release no longer has
    the function, nothing is changed (the fits then take turns) and a warning says so."""
    global _released
    with _release_lock:
        if _released is None:
            import numba
            from umap import layouts

            source = getattr(layouts, "_optimize_layout_euclidean_single_epoch", None)
            if source is None or not hasattr(layouts, "_nb_optimize_layout_euclidean_single_epoch"):
                log.warning("this umap-learn has no _optimize_layout_euclidean_single_epoch: the 5-D and 2-D "
                            "fits take turns on the GIL")
                _released = False
            else:
                layouts._nb_optimize_layout_euclidean_single_epoch = numba.njit(
                    source, fastmath=True, parallel=False, nogil=True)
                _released = True
        return _released


def _fit(embeddings, n_components, min_dist, seed, check, knn, report):
    release_gil_in_epochs()
    model = _umap(n_components, len(embeddings), min_dist, seed, check, report, knn)
    try:
        return model, np.asarray(model.fit_transform(embeddings), dtype=np.float32)
    except BaseException:
        bar = (model.tqdm_kwds or {}).get("file")
        if isinstance(bar, _EpochBar) and bar.stopped:
            _free_tqdm_lock()
        raise


def fit_umap(
    embeddings: np.ndarray, n_components: int = 5, min_dist: float = 0.0, seed: int | None = 42,
    check: Check | None = None, knn=None, report: EpochReport | None = None,
):
    """The fitted UMAP model and the reduced embeddings, shape (n_documents, n_components), float32.

    A fixed ``seed`` makes a job reproducible: the same documents and parameters give the same topics.
    ``check`` is called between epochs (about twice a second) and may raise to stop the fit; ``report``
    gets (epochs done, epochs) as often. ``knn``: ``neighbour_graph``'s result, to skip UMAP's own search."""
    with _quiet(), _one_blas_thread():
        return _fit(embeddings, n_components, min_dist, seed, check, knn, report)


MAP_MIN_DIST = 0.1


def map_coordinates(embeddings: np.ndarray, seed: int | None = 42, check: Check | None = None, knn=None,
                    report: EpochReport | None = None) -> np.ndarray:
    """2-D positions of the documents for the map, shape (n_documents, 2), float32."""
    _, coords = fit_umap(embeddings, n_components=2, min_dist=MAP_MIN_DIST, seed=seed, check=check, knn=knn,
                         report=report)
    return coords


# Shares of the reducing stage's progress bar: the neighbour search, the fits' set-up (the fuzzy graph and the
# initial layout, which have no callback either), then both fits' epochs together (they run side by side), from
# bench/scale.py's timings (the search is 5-10% of the stage at 10k-50k documents).
_SEARCH = 0.1
_SETUP = 0.1
_STEPS = 1000  # the stage's progress total


def _side_by_side(*calls: Callable[[], object]) -> list:
    """Each call on its own thread, their results in order; the first exception is raised once all ended.

    UMAP's seeded optimisation is single-threaded numba code, run without the GIL (``release_gil_in_epochs``),
    so the 5-D and 2-D fits run at once on two cores (1.7x at 10,000 PyPI summaries; tests/test_scale.py
    checks the results are the ones each fit gives alone): a seed keeps jobs reproducible and uses both cores."""
    results: list = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), name=f"topicq-umap-{i}") for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


@contextmanager
def _until(began: threading.Event, progress: Progress, start: float, end: float, expected_s: float,
           check: Check | None, interval: float = 5.0) -> Iterator[None]:
    """Moves the bar from ``start`` towards ``end`` (shares of the stage) every ``interval`` seconds until the
    epochs report (``began``), as ``Ticker`` does: the fuzzy graph and the initial layout have no callback. A
    cancel seen here is raised again once the fits return."""
    stop, errors = threading.Event(), []

    def tick() -> None:
        t0 = time.monotonic()
        while not stop.wait(interval) and not began.is_set():
            share = 1.0 - math.exp(-(time.monotonic() - t0) / max(expected_s, 1e-3))
            try:
                if check is not None:
                    check()
                if not began.is_set():
                    progress("reducing", int(_STEPS * (start + (end - start) * 0.99 * share)), _STEPS)
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread below
                errors.append(exc)
                return

    thread = threading.Thread(target=tick, daemon=True, name="topicq-umap-setup")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    if errors:
        raise errors[0]


def reduce(embeddings: np.ndarray, seed: int | None = 42, progress: Progress = no_progress,
           check: Check | None = None, steps: Steps = NO_STEPS, shared_from: int = SMALL) -> tuple[np.ndarray, np.ndarray]:
    """The clustering input (n, 5) and the map (n, 2), both float32, reporting ("reducing", done, 1000)
    through the neighbour search (ticking, since NN-descent has no callback) and the epochs of both fits.
    From ``shared_from`` documents on, both fits use one ``neighbour_graph``; the fits run side by side."""
    n = len(embeddings)
    progress("reducing", 0, _STEPS)
    knn = None
    if n >= shared_from:
        # About 0.25 ms per document on two loaded cores at 10k-50k (bench/scale.py): the ticker's guess.
        with steps.step("neighbours"), Ticker(progress, "reducing", 0, int(_STEPS * _SEARCH), _STEPS,
                                               expected_s=2.5e-4 * n, check=check):
            knn = neighbour_graph(embeddings, min(N_NEIGHBORS, n - 1), seed)
    search = _SEARCH if knn is not None else 0.0
    first = search + _SETUP  # where the epochs start
    share = {5: 0.0, 2: 0.0}  # each fit's epochs done / epochs; the bar shows their mean
    lock = threading.Lock()
    epochs_began = threading.Event()

    def report_for(components: int) -> EpochReport:
        def report(done: int, total: int) -> None:
            epochs_began.set()
            with lock:  # both fits' threads report; the sum only grows
                share[components] = done / max(total, 1)
                value = int(_STEPS * (first + (1 - first) * (share[5] + share[2]) / 2))
                progress("reducing", min(value, _STEPS - 1), _STEPS)
        return report

    with steps.step("umap 5-D + 2-D"), _quiet(), _one_blas_thread(), _until(epochs_began, progress, search, first, 1e-4 * n, check):
        (_, reduced), (_, coords) = _side_by_side(
            lambda: _fit(embeddings, 5, 0.0, seed, check, knn, report_for(5)),
            lambda: _fit(embeddings, 2, MAP_MIN_DIST, seed, check, knn, report_for(2)),
        )
    progress("reducing", _STEPS, _STEPS)
    return reduced, coords
