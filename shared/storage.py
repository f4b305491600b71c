"""Artifacts (embeddings, later exports) behind one small interface, so a shared store can replace disk."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from typing import Protocol

import numpy as np


class ArtifactStore(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, data: bytes) -> None: ...

    def exists(self, key: str) -> bool: ...

    def delete_prefix(self, prefix: str) -> None:
        """Delete every artifact whose key starts with ``prefix`` (a job's ``jobs/<id>/``)."""
        ...


def job_prefix(job_id: str) -> str:
    """Where a job's own artifacts (its stages' outputs) live; the embedding cache is shared across jobs."""
    return f"jobs/{job_id}/"


def model_key(job_id: str) -> str:
    """The fitted BERTopic model of a finished job (a zip of its safetensors folder)."""
    return f"{job_prefix(job_id)}model.zip"


def map_key(job_id: str, fmt: str) -> str:
    """The static map of a finished job, ``fmt`` "png" or "svg"."""
    return f"{job_prefix(job_id)}map.{fmt}"


class LocalArtifactStore:
    """Files under one directory; writes are atomic (a reader never sees half a file)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"artifact key escapes the store: {key!r}")
        return path

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        partial.write_bytes(data)
        partial.replace(path)

    def delete_prefix(self, prefix: str) -> None:
        if not prefix.endswith("/"):
            raise ValueError(f"delete_prefix takes a folder-like prefix ending in '/': {prefix!r}")
        shutil.rmtree(self._path(prefix.rstrip("/")), ignore_errors=True)


def array_to_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def array_from_bytes(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)
