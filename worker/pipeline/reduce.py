"""Stage 2: UMAP, to 5 dimensions for clustering and to 2 for the document map."""

from __future__ import annotations

import warnings

import numpy as np


def _umap(n_components: int, n_documents: int, min_dist: float, seed: int):
    from umap import UMAP

    return UMAP(
        n_neighbors=min(15, n_documents - 1),
        n_components=n_components,
        min_dist=min_dist,
        metric="cosine",
        random_state=seed,
    )


def fit_umap(embeddings: np.ndarray, n_components: int = 5, min_dist: float = 0.0, seed: int = 42):
    """The fitted UMAP model and the reduced embeddings, shape (n_documents, n_components), float32.

    A fixed ``seed`` makes a job reproducible: the same documents and parameters give the same topics."""
    model = _umap(n_components, len(embeddings), min_dist, seed)
    with warnings.catch_warnings():
        # random_state makes UMAP single-threaded; it says so on every call.
        warnings.filterwarnings("ignore", message="n_jobs value .* overridden", category=UserWarning)
        reduced = model.fit_transform(embeddings)
    return model, np.asarray(reduced, dtype=np.float32)


def map_coordinates(embeddings: np.ndarray, seed: int = 42) -> np.ndarray:
    """2-D positions of the documents for the map, shape (n_documents, 2), float32."""
    _, coords = fit_umap(embeddings, n_components=2, min_dist=0.1, seed=seed)
    return coords
