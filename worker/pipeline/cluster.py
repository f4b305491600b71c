"""Stage 3: HDBSCAN on the reduced embeddings (or, for bench/quality.py, one of the candidates below).

hdbscan 0.8.44 stays: on the 5-D UMAP of 50,000 PyPI summaries it took 21.9 s against fast_hdbscan 0.3.4's
25.0 s (reproducible=True, two loaded cores; same 120 clusters, ARI 0.96 between them), and its Boruvka KD-tree
grows about n log n in 5-D; inside topicq's pipeline (bench/quality.py, 2026-12-03, three seeds) fast_hdbscan gave
the same topics (NMI 0.387 / 0.386 against hdbscan's 0.387 / 0.387 on news_sections / python_docs) in the same
time. EVoC 0.3.2, which replaces UMAP + HDBSCAN, is faster but loses quality against the labels even with
topicq's outlier reduction and representations on its clusters: NMI 0.300 against 0.387 on news_sections (one
seed of three 0.151) and 0.326 against 0.387 on python_docs, with fewer topics (16 and 22 against 40 and 47);
and it gives no 2-D map, which still needs a UMAP fit (included in its 9.9 s and 13.2 s a run, against 18.0 s
and 26.8 s for UMAP 5-D + 2-D + HDBSCAN).

``PipelineConfig.clusterer`` picks one of ``CLUSTERERS`` so that bench/quality.py can score the candidates
inside topicq's own pipeline; jobs use the default, "hdbscan".
"""

from __future__ import annotations

import numpy as np

HDBSCAN = "hdbscan"
FAST_HDBSCAN = "fast_hdbscan"  # the same algorithm in numba (package fast_hdbscan), on the same 5-D UMAP
EVOC = "evoc"  # EVoC on the embeddings themselves, in place of UMAP + HDBSCAN (package evoc, the bench extra)
CLUSTERERS = (HDBSCAN, FAST_HDBSCAN, EVOC)


def cluster(reduced: np.ndarray, min_cluster_size: int, min_samples: int | None = None, implementation: str = HDBSCAN):
    """The fitted HDBSCAN model and a cluster id per document (int32, -1 for outliers); ``implementation``:
    hdbscan's or fast_hdbscan's (reproducible), with the same settings."""
    if implementation == FAST_HDBSCAN:
        from fast_hdbscan import HDBSCAN as FastHDBSCAN

        model = FastHDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples,
                            cluster_selection_method="eom", reproducible=True)
    elif implementation == HDBSCAN:
        from hdbscan import HDBSCAN as PlainHDBSCAN

        model = PlainHDBSCAN(
            min_cluster_size=min_cluster_size,
            min_samples=min_samples,
            metric="euclidean",
            cluster_selection_method="eom",
            # No prediction data: nothing asks the fitted model to predict (outliers are reassigned from the
            # embeddings), and building it searched every point's core distance a second time: 8.3-9.0 s
            # against 11.3-12.0 s at 200,000 PyPI summaries, the same labels (bench/README.md, Scale).
            prediction_data=False,
            # Core distances (most of HDBSCAN's time: 7 of 10 s at 200,000) on every core the process may use;
            # hdbscan's default is 4 processes whatever the machine: on 2 cores 1.5 s against 2.2-3.5 s at
            # 50,000 documents and 8.0-8.1 s against 8.4-9.8 s at 200,000, the same labels.
            core_dist_n_jobs=-1,
        )
    else:
        raise ValueError(f"unknown HDBSCAN implementation {implementation!r}")
    labels = model.fit_predict(reduced)
    return model, np.asarray(labels, dtype=np.int32)


def cluster_evoc(embeddings: np.ndarray, min_cluster_size: int, seed: int | None = 42) -> np.ndarray:
    """EVoC's clusters of the (n, dim) unit embeddings: a cluster id per document (int32, -1 for outliers).

    ``min_cluster_size`` is its finest layer's; of its layers, the one it picks itself (the most persistent),
    since choosing by the labels would be cheating. Its other settings are its defaults."""
    from evoc import EVoC

    labels = EVoC(base_min_cluster_size=min_cluster_size, random_state=seed).fit_predict(embeddings)
    return np.asarray(labels, dtype=np.int32)
