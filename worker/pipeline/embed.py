"""Stage 1: document embeddings with a sentence-transformers model."""

from __future__ import annotations

import numpy as np

from worker.pipeline.progress import Progress, no_progress


def embed(texts: list[str], model, batch_size: int = 64, progress: Progress = no_progress) -> np.ndarray:
    """Unit-length embeddings, shape (n_documents, dim), float32, in the order of ``texts``.

    Documents are encoded longest first (as sentence-transformers does inside one call) so each batch
    pads little, and progress is reported after every batch.
    """
    order = np.argsort([-len(t) for t in texts], kind="stable")
    out: np.ndarray | None = None
    total = len(texts)
    progress("embedding", 0, total)
    for start in range(0, total, batch_size):
        batch = order[start : start + batch_size]
        vectors = model.encode(
            [texts[i] for i in batch],
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32, copy=False)
        if out is None:
            out = np.empty((total, vectors.shape[1]), dtype=np.float32)
        out[batch] = vectors
        progress("embedding", min(start + batch_size, total), total)
    assert out is not None
    return out
