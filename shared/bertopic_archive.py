"""A job's fitted BERTopic model as a zip that ``BERTopic.load`` reads, with the service's edits written into it.

The zip holds one folder, ``topicq-model/``, with the files of BERTopic's ``save(serialization="safetensors",
save_ctfidf=True)``: config.json, topics.json, topic_embeddings.safetensors, ctfidf.safetensors and
ctfidf_config.json (and a README.txt). numpy and the standard library only (with safetensors' numpy API): the
web process rewrites archives and must not import bertopic or torch.

BERTopic derives ``_outliers`` (whether row 0 of the topic embeddings is the outlier topic -1) from
``-1 in topic_sizes_``, so ``with_edits`` keeps every topic of the model in ``topic_sizes``, with 0 for one
that the user's moves emptied: a model loaded from the archive then transforms like the fitted one.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

FOLDER = "topicq-model"
TOPICS = f"{FOLDER}/topics.json"
TOPIC_EMBEDDINGS = f"{FOLDER}/topic_embeddings.safetensors"
README = f"{FOLDER}/README.txt"
BERTOPIC_VERSION = "0.17.4"  # the worker's (pyproject.toml): a model loads in the version that saved it


def pack(folder: Path) -> bytes:
    """The files of a saved model's folder as a zip, under ``topicq-model/`` whatever the folder's name."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(path, f"{FOLDER}/{path.relative_to(folder).as_posix()}")
    return buffer.getvalue()


def _read(archive: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        return z.read(name)


def _replace(archive: bytes, files: Mapping[str, bytes]) -> bytes:
    """The zip with ``files`` (name -> content) written in place of, or beside, its own entries."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as source, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if info.filename not in files:
                target.writestr(info, source.read(info), compress_type=zipfile.ZIP_DEFLATED)
        for name, data in files.items():
            target.writestr(name, data)
    return buffer.getvalue()


def with_edits(archive: bytes, labels: Mapping[int, str], doc_topics: Sequence[int] | None = None,
               readme: str | None = None) -> bytes:
    """The archive with topics.json rewritten to carry the service's current state.

    Args:
        labels: topic id -> the label the service shows; they become BERTopic's ``custom_labels_`` (a list in
            topic order, -1 first when the model has it; a topic without one keeps its custom label, else
            BERTopic's own name such as "-1_the_of_and_to").
        doc_topics: shape (n,), each training document's current topic (a user may have moved documents):
            ``topics_`` becomes it and ``topic_sizes_`` its counts, 0 for a topic left empty.
        readme: the text of a README.txt beside the model files (``readme_text``).

    Raises:
        ValueError: a label or a document for a topic the model does not have (-1 included, when the model was
            fitted without outliers), or ``doc_topics`` of another length than the model's documents.
    """
    topics = json.loads(_read(archive, TOPICS))
    ids = sorted(int(topic) for topic in topics["topic_representations"])
    unknown = sorted(set(labels) - set(ids))
    if unknown:
        raise ValueError(f"labels for topics the model does not have: {unknown}")
    if doc_topics is not None:
        current = [int(topic) for topic in doc_topics]
        if len(current) != len(topics["topics"]):
            raise ValueError(f"{len(current)} document topics for a model of {len(topics['topics'])} documents")
        strays = sorted(set(current) - set(ids))
        if strays:
            raise ValueError(f"documents in topics the model does not have: {strays}")
        counts = Counter(current)
        topics["topics"] = current
        topics["topic_sizes"] = {str(topic): counts.get(topic, 0) for topic in ids}
    previous = topics.get("custom_labels") or []
    previous = previous if len(previous) == len(ids) else [None] * len(ids)
    topics["custom_labels"] = [
        labels.get(topic) or previous[row] or topics["topic_labels"][str(topic)] for row, topic in enumerate(ids)
    ]
    files = {TOPICS: json.dumps(topics, indent=2).encode()}
    if readme is not None:
        files[README] = readme.encode()
    return _replace(archive, files)


def topic_embeddings(archive: bytes) -> tuple[np.ndarray, list[int], int]:
    """(matrix, ids, outliers), in the order ``assign`` takes them after the documents' embeddings: the topic
    embeddings, shape (k, d) float32, row i for topic ids[i]; the model's topic ids, lowest first; and 1 when
    row 0 is the outlier topic -1, else 0 (BERTopic's ``_outliers``)."""
    from safetensors.numpy import load

    matrix = load(_read(archive, TOPIC_EMBEDDINGS))["topic_embeddings"].astype(np.float32, copy=False)
    topics = json.loads(_read(archive, TOPICS))
    ids = sorted(int(topic) for topic in topics["topic_representations"])
    if len(ids) != len(matrix):
        raise ValueError(f"{len(matrix)} topic embeddings for {len(ids)} topics")
    return matrix, ids, int(-1 in {int(topic) for topic in topics["topic_sizes"]})


def readme_text(job_name: str, embedding_model_ref: str) -> str:
    """How to load the unzipped folder, with the embedding model the topics were fitted with."""
    return (
        f"The BERTopic model of the topicq job {job_name!r}, with the labels and document topics it shows.\n"
        f"Load it with the embedding model it was fitted with (pip install bertopic=={BERTOPIC_VERSION}):\n\n"
        "    from bertopic import BERTopic\n"
        "    from sentence_transformers import SentenceTransformer\n"
        f'    model = BERTopic.load("{FOLDER}", embedding_model=SentenceTransformer("{embedding_model_ref}"))\n\n'
        "model.get_topic_info() lists the topics; model.transform(docs) puts new documents in them as the service"
        " does.\n"
    )
