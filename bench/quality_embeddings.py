"""The embeddings bench/quality.py scores: each model loaded as the worker loads it, its vectors cached by
content hash as the service caches them, and its embedding time."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from shared.settings import Settings
from shared.storage import load_array, save_array
from worker.artifacts import embedding_key
from worker.models import embedding_cache_name, load_embedder_described
from worker.pipeline.embed import DEFAULT_WINDOWS, embed


def timed_embeddings(texts: list[str], embedder, model_name: str, windows: int,
                     store) -> tuple[np.ndarray, float | None]:
    """Unit embeddings (n, dim) from the cache or computed, and the seconds computing took (None: cached)."""
    key = embedding_key(model_name, windows, texts)
    stored = load_array(store, key)
    if stored is not None:
        return stored, None
    started = time.perf_counter()
    vectors = embed(texts, embedder, max_windows=windows)
    seconds = time.perf_counter() - started
    save_array(store, key, vectors)
    return vectors, seconds


def cached_embeddings(texts: list[str], embedder, model_name: str, windows: int, store) -> np.ndarray:
    return timed_embeddings(texts, embedder, model_name, windows, store)[0]


def embedding_time(texts: list[str], embedder, windows: int = DEFAULT_WINDOWS) -> float:
    """Seconds to embed ``texts`` (uncached), after a warm-up batch of their first 8."""
    embed(texts[:8], embedder, max_windows=windows)
    started = time.perf_counter()
    embed(texts, embedder, max_windows=windows)
    return time.perf_counter() - started


@dataclass
class Model:
    label: str
    embedder: object
    cache_name: str  # the model and its backend, the cache key's part
    kind: str  # the backend, as the worker logs it

    @classmethod
    def load(cls, label: str, settings: Settings) -> Model:
        started = time.perf_counter()
        embedder, kind = load_embedder_described(settings)
        print(f"{label}: {settings.embedding_model}, {kind}, loaded in {time.perf_counter() - started:.1f} s",
              flush=True)
        return cls(label, embedder, embedding_cache_name(settings), kind)


def embedding_cost(texts: list[str], minilm: Model, mpnet: Model, computed: dict[str, float | None],
                   timing_docs: int) -> float:
    """mpnet's embedding time over MiniLM's on this corpus, printed: both full corpora's when both were computed
    in this run, else both timed now on the first ``timing_docs`` documents."""
    if computed["MiniLM"] is not None and computed["mpnet"] is not None:
        ratio = computed["mpnet"] / computed["MiniLM"]
        print(f"  embedding time, all {len(texts)} documents, {DEFAULT_WINDOWS} windows: MiniLM "
              f"{computed['MiniLM']:.1f} s, mpnet {computed['mpnet']:.1f} s: mpnet/MiniLM {ratio:.2f}x")
        return ratio
    sample_texts = texts[:timing_docs]
    seconds = {m.label: embedding_time(sample_texts, m.embedder) for m in (minilm, mpnet)}
    ratio = seconds["mpnet"] / seconds["MiniLM"]
    print(f"  embedding time, {len(sample_texts)} of the documents (the rest came from the cache), "
          f"{DEFAULT_WINDOWS} windows: MiniLM {seconds['MiniLM']:.1f} s, mpnet {seconds['mpnet']:.1f} s: "
          f"mpnet/MiniLM {ratio:.2f}x")
    return ratio
