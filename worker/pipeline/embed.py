"""Stage 1: document embeddings with a sentence-transformers model.

A document longer than the model's input (256 tokens for MiniLM, 384 for MPNet) is cut into consecutive
windows of that length, at most ``max_windows`` of them; its embedding is the normalized mean of theirs. So
an article is embedded from more than its first paragraphs (bench/quality.py measures what that buys).
"""

from __future__ import annotations

import numpy as np

from worker.pipeline.progress import Progress, no_progress

DEFAULT_WINDOWS = 4
TOKENIZE_BATCH = 1000  # documents tokenized at a time, to bound memory


def windows(texts: list[str], tokenizer, window_tokens: int, max_windows: int) -> tuple[list[str], np.ndarray]:
    """The pieces to embed and, for each piece, the index of its document.

    Pieces are cut at token boundaries of the original text (character offsets), so each piece re-tokenizes
    to at most ``window_tokens`` tokens; a document that fits in one window is its own single piece.
    """
    if max_windows <= 1 or not getattr(tokenizer, "is_fast", False):  # offsets need a fast tokenizer
        return list(texts), np.arange(len(texts))
    pieces: list[str] = []
    owners: list[int] = []
    for first in range(0, len(texts), TOKENIZE_BATCH):
        group = list(texts[first : first + TOKENIZE_BATCH])
        encoded = tokenizer(group, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        for index, (text, offsets) in enumerate(zip(group, encoded["offset_mapping"]), start=first):
            if len(offsets) <= window_tokens:
                pieces.append(text)
                owners.append(index)
                continue
            for start in range(0, min(len(offsets), window_tokens * max_windows), window_tokens):
                chunk = offsets[start : start + window_tokens]
                pieces.append(text[chunk[0][0] : chunk[-1][1]])
                owners.append(index)
    return pieces, np.asarray(owners, dtype=np.int64)


def embed(
    texts: list[str],
    model,
    batch_size: int = 64,
    progress: Progress = no_progress,
    max_windows: int = DEFAULT_WINDOWS,
) -> np.ndarray:
    """Unit-length embeddings, shape (n_documents, dim), float32, in the order of ``texts``.

    Pieces are encoded longest first (as sentence-transformers does inside one call) so each batch pads
    little, and progress is reported after every batch, in documents' worth of pieces.
    """
    # Two tokens of the model's input go to its [CLS]/[SEP] (or <s>/</s>) markers.
    window_tokens = max(16, int(model.max_seq_length) - 2)
    pieces, owners = windows(texts, model.tokenizer, window_tokens, max_windows)
    order = np.argsort([-len(p) for p in pieces], kind="stable")
    total = len(texts)
    vectors = None
    progress("embedding", 0, total)
    for start in range(0, len(pieces), batch_size):
        batch = order[start : start + batch_size]
        encoded = model.encode(
            [pieces[i] for i in batch],
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32, copy=False)
        if vectors is None:
            vectors = np.zeros((total, encoded.shape[1]), dtype=np.float32)
        np.add.at(vectors, owners[batch], encoded)
        progress("embedding", min(total, round(total * (start + len(batch)) / len(pieces))), total)
    if vectors is None:
        return np.zeros((0, model.get_embedding_dimension() or 0), dtype=np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors
