"""Stage 2: UMAP, to 5 dimensions for clustering and to 2 for the document map."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

Check = Callable[[], None]  # raises to stop the stage (a cancelled job)


class _EpochCheck:
    """A file for UMAP's epoch progress bar that calls ``check`` on each refresh instead of printing: UMAP has
    no callback, and its bar is the one place its optimisation loop yields between epochs."""

    def __init__(self, check: Check) -> None:
        self.check = check

    def write(self, _text: str) -> None:
        self.check()

    def flush(self) -> None:
        return None


def _umap(n_components: int, n_documents: int, min_dist: float, seed: int, check: Check | None = None):
    from umap import UMAP

    bar = {"disable": False, "file": _EpochCheck(check), "mininterval": 0.5, "miniters": 1} if check else None
    return UMAP(
        n_neighbors=min(15, n_documents - 1),
        n_components=n_components,
        min_dist=min_dist,
        metric="cosine",
        random_state=seed,
        tqdm_kwds=bar,
    )


def fit_umap(
    embeddings: np.ndarray, n_components: int = 5, min_dist: float = 0.0, seed: int = 42, check: Check | None = None
):
    """The fitted UMAP model and the reduced embeddings, shape (n_documents, n_components), float32.

    A fixed ``seed`` makes a job reproducible: the same documents and parameters give the same topics.
    ``check`` is called between epochs (about twice a second) and may raise to stop the fit."""
    model = _umap(n_components, len(embeddings), min_dist, seed, check)
    with warnings.catch_warnings():
        # random_state makes UMAP single-threaded; it says so on every call.
        warnings.filterwarnings("ignore", message="n_jobs value .* overridden", category=UserWarning)
        reduced = model.fit_transform(embeddings)
    return model, np.asarray(reduced, dtype=np.float32)


def map_coordinates(embeddings: np.ndarray, seed: int = 42, check: Check | None = None) -> np.ndarray:
    """2-D positions of the documents for the map, shape (n_documents, 2), float32."""
    _, coords = fit_umap(embeddings, n_components=2, min_dist=0.1, seed=seed, check=check)
    return coords
