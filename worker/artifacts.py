"""What one stage hands the next, through the artifact store: keys and (de)serialisation, nothing else.

A job's own artifacts live under ``jobs/<id>/`` (deleted with the job); embeddings live under a content key
shared by every job with the same documents and model (the cache).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable
from dataclasses import asdict

import numpy as np

from shared.storage import ArtifactStore, array_from_bytes, array_to_bytes, job_prefix
from worker.pipeline.label import Label
from worker.pipeline.outliers import OutlierReduction
from worker.pipeline.reask import FaithfulLabels
from worker.pipeline.represent import TopicRepresentation
from worker.pipeline.levels import DomainResult, ThemeResult
from worker.pipeline.run import Clusters
from worker.pipeline.scores import Scores


def embedding_key(model_name: str, windows: int, texts: Iterable[str]) -> str:
    """Content hash of the corpus, the model and the windows per document: the same documents reuse their
    embeddings."""
    digest = hashlib.sha256(f"{model_name}|windows={windows}".encode())
    for text in texts:
        digest.update(b"\x00" + text.encode())
    return f"embeddings/{digest.hexdigest()}.npy"


def embedding_chunk_key(job_id: str, chunk: int) -> str:
    return f"{job_prefix(job_id)}embedding/{chunk}.npy"


def put_array(store: ArtifactStore, key: str, array: np.ndarray) -> None:
    store.put(key, array_to_bytes(array))


def get_array(store: ArtifactStore, key: str) -> np.ndarray | None:
    data = store.get(key)
    return None if data is None else array_from_bytes(data)


def _put_json(store: ArtifactStore, job_id: str, name: str, value) -> None:
    store.put(f"{job_prefix(job_id)}{name}.json", json.dumps(value).encode())


def _get_json(store: ArtifactStore, job_id: str, name: str):
    """The job's ``name``.json, parsed; None when it is not in the store."""
    data = store.get(f"{job_prefix(job_id)}{name}.json")
    return None if data is None else json.loads(data)


def put_clusters(store: ArtifactStore, job_id: str, clusters: Clusters) -> None:
    arrays = io.BytesIO()
    np.savez(arrays, doc_topics=clusters.doc_topics, original_doc_topics=clusters.original_doc_topics,
             coords=clusters.coords, theme_of=clusters.theme_of, domain_of=clusters.domain_of)
    store.put(f"{job_prefix(job_id)}clusters.npz", arrays.getvalue())
    described = {
        "representations": [asdict(r) for r in clusters.representations],
        "scores": asdict(clusters.scores) if clusters.scores else None,
        "outliers": asdict(clusters.outliers) if clusters.outliers else None,
    }
    _put_json(store, job_id, "clusters", described)


def get_clusters(store: ArtifactStore, job_id: str) -> Clusters:
    arrays = store.get(f"{job_prefix(job_id)}clusters.npz")
    meta = _get_json(store, job_id, "clusters")
    if arrays is None or meta is None:
        raise LookupError(f"job {job_id}: the cluster stage's output is missing from the artifact store")
    with np.load(io.BytesIO(arrays), allow_pickle=False) as npz:
        loaded = {name: npz[name] for name in npz.files}
    return Clusters(
        representations=[TopicRepresentation(**r) for r in meta["representations"]],
        doc_topics=loaded["doc_topics"],
        original_doc_topics=loaded["original_doc_topics"],
        coords=loaded["coords"],
        theme_of=loaded["theme_of"],
        scores=Scores(**meta["scores"]) if meta["scores"] else None,
        outliers=OutlierReduction(**meta["outliers"]) if meta.get("outliers") else None,  # absent: written before
        domain_of=loaded.get("domain_of", np.array([], dtype=np.int32)),  # absent: written before domains
    )


def _labels_key(job_id: str, chunk: int) -> str:
    return f"{job_prefix(job_id)}labels/{chunk}.json"


def put_labels(store: ArtifactStore, job_id: str, chunk: int, labels: list[Label]) -> None:
    store.put(_labels_key(job_id, chunk), json.dumps([asdict(label) for label in labels]).encode())


def get_labels(store: ArtifactStore, job_id: str, chunks: int) -> list[Label]:
    """The topic labels of chunks 0 .. ``chunks - 1``, in topic order."""
    labels = []
    for chunk in range(chunks):
        data = store.get(_labels_key(job_id, chunk))
        if data is None:
            raise LookupError(f"job {job_id}: labels of chunk {chunk} are missing from the artifact store")
        labels += [Label(**item) for item in json.loads(data)]
    return labels


def put_themes(store: ArtifactStore, job_id: str, themes: list[ThemeResult]) -> None:
    _put_json(store, job_id, "themes", [asdict(t) for t in themes])


def get_themes(store: ArtifactStore, job_id: str) -> list[ThemeResult]:
    return [ThemeResult(t["theme"], Label(**t["label"]), t["topics"], t["size"])
            for t in _get_json(store, job_id, "themes") or []]


def put_domains(store: ArtifactStore, job_id: str, domains: list[DomainResult]) -> None:
    _put_json(store, job_id, "domains", [asdict(d) for d in domains])


def get_domains(store: ArtifactStore, job_id: str) -> list[DomainResult]:
    return [DomainResult(d["domain"], Label(**d["label"]), d["themes"], d["size"])
            for d in _get_json(store, job_id, "domains") or []]


def put_faithful(store: ArtifactStore, job_id: str, faithful: FaithfulLabels) -> None:
    _put_json(store, job_id, "faithfulness", asdict(faithful))


def get_faithful(store: ArtifactStore, job_id: str) -> FaithfulLabels | None:
    """The job's labels after the faithfulness step, with their scores; None when the step did not score them."""
    stored = _get_json(store, job_id, "faithfulness")
    if stored is None:
        return None
    return FaithfulLabels(**(stored | {"labels": [Label(**label) for label in stored["labels"]]}))
