"""Artifacts (embeddings, clusters, maps, exported models) behind one small interface: a local folder on one
machine, any fsspec URL (S3, MinIO, GCS) when the web and the workers run on several.

Every store gives the same guarantees: a reader never sees half an object (it sees the old one, the new one,
or none), a key never reaches outside the store's folder or prefix, and ``delete_prefix`` removes a job's
objects. Large arrays go through :func:`save_array` / :func:`load_array`, which stream: a 0.9 GB embedding
matrix is held once (the array), not twice (the array and its bytes).
"""

from __future__ import annotations

import io
import os
import posixpath
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

import numpy as np

if TYPE_CHECKING:
    from shared.settings import Settings


class ArtifactStore(Protocol):
    def get(self, key: str) -> bytes | None:
        """The whole object, or None when there is none under ``key``."""
        ...

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing what was there; readers see the old or the new object whole."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete_prefix(self, prefix: str) -> None:
        """Delete every artifact whose key starts with ``prefix`` (a job's ``jobs/<id>/``)."""
        ...

    def reader(self, key: str) -> BinaryIO:
        """A seekable binary file over the object, read in blocks; FileNotFoundError when there is none."""
        ...

    def writer(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A context manager giving a binary file to write the object to; it appears, whole, only when the block
        ends without an exception (an exception leaves whatever was there before)."""
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


def open_store(settings: Settings) -> ArtifactStore:
    """The store the settings name, the same for the web and every worker: TOPICQ_ARTIFACT_URL (with
    TOPICQ_ARTIFACT_OPTIONS), or the folder ``artifacts`` in the data directory when it is unset."""
    if settings.artifact_url is None:
        return LocalArtifactStore(settings.data_dir / "artifacts")
    return FsspecArtifactStore(settings.artifact_url, **settings.artifact_options)


def check_store(store: ArtifactStore) -> None:
    """Write, read back and delete a small object, so that a worker with a wrong bucket, endpoint or credentials
    stops at start with the reason (RuntimeError) instead of failing its first job."""
    probe = f"probes/{uuid.uuid4().hex}/"
    try:
        store.put(probe + "probe", b"topicq")
        read = store.get(probe + "probe")
        store.delete_prefix(probe)
    except Exception as exc:
        raise RuntimeError(f"the artifact store {store!r} is not usable: {type(exc).__name__}: {exc}") from exc
    if read != b"topicq":
        raise RuntimeError(f"the artifact store {store!r} did not give back what was written to it")


class LocalArtifactStore:
    """Files under one directory; writes go to a private file first, then are renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __repr__(self) -> str:
        return f"LocalArtifactStore({str(self.root)!r})"

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
        with self.writer(key) as handle:
            handle.write(data)

    def reader(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")

    @contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")
        try:
            with partial.open("wb") as handle:
                yield handle
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        _check_prefix(prefix)
        shutil.rmtree(self._path(prefix.rstrip("/")), ignore_errors=True)


# Backends whose PUT (and multipart upload, once completed) replaces an object atomically: written in place.
# Any other fsspec backend (a mounted folder, SFTP, memory) gets a private name first and a rename after.
ATOMIC_PUT_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs"})
# Objects up to this size go up in one request; larger ones stream in parts of the filesystem's block size,
# so a put holds the data plus one part, not the data plus a copy per concurrent part.
WHOLE_PUT_BYTES = 32 * 2**20
WRITE_SLICE = 8 * 2**20


class FsspecArtifactStore:
    """Objects under one fsspec URL, e.g. ``s3://bucket/topicq`` (``storage_options`` as fsspec takes them, such
    as ``client_kwargs={"endpoint_url": "http://minio:9000"}``).

    Listings are never cached (``use_listings_cache=False`` unless given): another machine may have written or
    deleted an object since. The filesystem is made again in a forked child, whose parent's event loop and
    connections it cannot use.
    """

    def __init__(self, url: str, **storage_options: Any) -> None:
        self.url = url
        self.storage_options = {"use_listings_cache": False, **storage_options}
        self._pid = -1
        self._connect()  # a bad URL or a missing backend fails here, at start, not at the first job

    def _connect(self):
        from fsspec.core import url_to_fs

        self._fs, root = url_to_fs(self.url, **self.storage_options)
        self._root = root.rstrip("/")
        self._pid = os.getpid()
        protocols = self._fs.protocol if isinstance(self._fs.protocol, tuple) else (self._fs.protocol,)
        self._atomic = bool(ATOMIC_PUT_PROTOCOLS & set(protocols))
        return self._fs

    @property
    def fs(self):
        return self._fs if self._pid == os.getpid() else self._connect()

    def __repr__(self) -> str:
        return f"FsspecArtifactStore({self.url!r})"

    def _path(self, key: str) -> str:
        return f"{self._root}/{_relative(key)}"

    def get(self, key: str) -> bytes | None:
        try:
            return self.fs.cat_file(self._path(key))
        except FileNotFoundError:
            return None

    def exists(self, key: str) -> bool:
        return self.fs.isfile(self._path(key))

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        if self._atomic and len(data) <= WHOLE_PUT_BYTES:
            self.fs.pipe_file(path, data)
            return
        view = memoryview(data)
        with self.writer(key) as handle:
            for start in range(0, len(view), WRITE_SLICE):
                handle.write(view[start:start + WRITE_SLICE])

    def reader(self, key: str) -> BinaryIO:
        return self.fs.open(self._path(key), "rb")

    @contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        fs, path = self.fs, self._path(key)
        if self._atomic:
            # Not autocommitted: the parts go up as they fill, and the object exists only after commit();
            # discard() aborts the multipart upload, so a failed write leaves the old object (or none).
            handle = fs.open(path, "wb", autocommit=False)
            try:
                yield handle
                handle.close()
                handle.commit()
            except BaseException:
                handle.discard()
                handle.closed = True  # discarded: nothing left to flush when it is collected
                raise
            return
        partial = f"{path}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial"
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        try:
            with fs.open(partial, "wb") as handle:
                yield handle
            fs.mv(partial, path)
        finally:
            if fs.exists(partial):
                fs.rm(partial)

    def delete_prefix(self, prefix: str) -> None:
        _check_prefix(prefix)
        fs, folder = self.fs, self._path(prefix.rstrip("/"))
        if self._atomic:
            # An object store has no folders: listing "jobs/a" also finds an object named "jobs/a" itself,
            # which does not start with "jobs/a/". Listed here and deleted in bulk (1,000 keys a request).
            keys = [path for path in fs.find(folder) if path.startswith(f"{folder}/")]
            if keys:
                fs.rm(keys)
        elif fs.isdir(folder):
            fs.rm(folder, recursive=True)


def _relative(key: str) -> str:
    """``key`` as a clean relative path inside the store: "a//b/../c" is "a/c"; "/x", "../x", "" are refused."""
    clean = posixpath.normpath(key) if key else ""
    if not clean or clean == "." or key.startswith("/") or clean == ".." or clean.startswith("../"):
        raise ValueError(f"artifact key escapes the store: {key!r}")
    return clean


def _check_prefix(prefix: str) -> None:
    if not prefix.endswith("/"):
        raise ValueError(f"delete_prefix takes a folder-like prefix ending in '/': {prefix!r}")


def save_array(store: ArtifactStore, key: str, array: np.ndarray) -> None:
    """Write ``array`` as .npy to ``store``, streamed: numpy writes it in 16 MiB pieces, never as one copy."""
    with store.writer(key) as handle:
        np.save(handle, array, allow_pickle=False)


def save_array_parts(store: ArtifactStore, key: str, parts: Iterable[np.ndarray], shape: tuple[int, ...],
                     dtype: np.dtype | str) -> None:
    """Write the row-wise concatenation of ``parts`` as one .npy of ``shape`` (rows first) without building it:
    one part in memory at a time (e.g. a job's embedding chunks into its ``(n_docs, dim)`` matrix). The rows must
    add up to ``shape[0]``, else ValueError and nothing is stored."""
    dtype = np.dtype(dtype)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
    rows = 0
    with store.writer(key) as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        for part in parts:
            if part.dtype != dtype or part.shape[1:] != tuple(shape[1:]):
                raise ValueError(f"a part of {part.dtype} {part.shape} does not fit a {dtype} array of {shape}")
            rows += len(part)
            if rows > shape[0]:
                break
            view = memoryview(np.ascontiguousarray(part).reshape(-1).view(np.uint8))
            for start in range(0, len(view), WRITE_SLICE):
                handle.write(view[start:start + WRITE_SLICE])
        if rows != shape[0]:
            raise ValueError(f"the parts hold {rows}+ rows, not the {shape[0]} of {key}")


def load_array(store: ArtifactStore, key: str) -> np.ndarray | None:
    """The .npy array under ``key`` (None when there is none), read into the array directly: one copy in memory
    plus the store's read block (fsspec's block size; a real file on a local store)."""
    try:
        handle = store.reader(key)
    except FileNotFoundError:
        return None
    with handle:
        return np.load(handle, allow_pickle=False)


def read_npy_header(handle: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the .npy file open at its start in ``handle``, which is left at its data."""
    version = np.lib.format.read_magic(handle)
    header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return header(handle)


def array_shape(store: ArtifactStore, key: str) -> tuple[int, ...] | None:
    """The shape of the .npy array under ``key`` from its header alone (None when there is none)."""
    try:
        handle = store.reader(key)
    except FileNotFoundError:
        return None
    with handle:
        return tuple(read_npy_header(handle)[0])


def load_rows(store: ArtifactStore, key: str, rows: np.ndarray, block: int = 8192) -> np.ndarray | None:
    """Rows ``rows`` (m,) (sorted indices) of the 2-D .npy array under ``key``, as an (m, ...) array (None when
    there is none), read ``block`` rows at a time in one forward pass: never the whole array in memory."""
    try:
        handle = store.reader(key)
    except FileNotFoundError:
        return None
    rows = np.asarray(rows, dtype=np.int64)
    with handle:
        shape, fortran, dtype = read_npy_header(handle)
        if fortran:
            raise ValueError(f"{key}: a Fortran-ordered array cannot be read by rows")
        row_shape = tuple(shape[1:])
        row_bytes = int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize
        out = np.empty((len(rows), *row_shape), dtype=dtype)
        filled = 0
        for start in range(0, shape[0], block):
            stop = min(start + block, shape[0])
            end = int(np.searchsorted(rows, stop))
            if end == filled:
                handle.seek(handle.tell() + (stop - start) * row_bytes)  # no wanted row in this block
                continue
            data = handle.read((stop - start) * row_bytes)
            part = np.frombuffer(data, dtype=dtype).reshape(stop - start, *row_shape)
            out[filled:end] = part[rows[filled:end] - start]
            filled = end
            if filled == len(rows):
                break
    return out


def array_to_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def array_from_bytes(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)
