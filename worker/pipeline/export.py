"""The fitted BERTopic model as a zip that a notebook unzips and loads with ``BERTopic.load``."""

from __future__ import annotations

import tempfile
from pathlib import Path

from shared.bertopic_archive import FOLDER, pack


def model_archive(topic_model, embedding_model_ref: str) -> bytes:
    """The model as BERTopic saves it (safetensors, c-TF-IDF included), zipped under ``topicq-model/``.

    ``embedding_model_ref`` is a pointer such as "sentence-transformers/all-MiniLM-L6-v2" written into
    config.json; the embedding model itself is not saved (the user passes it to ``BERTopic.load``). The topic
    embeddings, shape (k, d) float32, are the mean document embedding of each topic, -1 first when there are
    outliers.
    """
    with tempfile.TemporaryDirectory(prefix="topicq-export-") as scratch:
        folder = Path(scratch) / FOLDER
        topic_model.save(folder, serialization="safetensors", save_ctfidf=True,
                         save_embedding_model=embedding_model_ref)
        return pack(folder)
