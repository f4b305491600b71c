"""Stage 3: HDBSCAN on the reduced embeddings."""

from __future__ import annotations

import numpy as np


def cluster(reduced: np.ndarray, min_cluster_size: int, min_samples: int | None = None):
    """The fitted HDBSCAN model and a cluster id per document (int32, -1 for outliers)."""
    from hdbscan import HDBSCAN

    model = HDBSCAN(
        min_cluster_size=min_cluster_size,
        min_samples=min_samples,
        metric="euclidean",
        cluster_selection_method="eom",
        prediction_data=True,
    )
    labels = model.fit_predict(reduced)
    return model, np.asarray(labels, dtype=np.int32)
