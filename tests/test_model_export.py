"""A finished job's model as a zip a notebook loads with BERTopic, and new documents assigned to its topics."""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from dataclasses import dataclass
from importlib.metadata import version

import numpy as np
import pytest

from shared.bertopic_archive import FOLDER, TOPIC_EMBEDDINGS, TOPICS, readme_text, topic_embeddings, with_edits
from tests.conftest import CHAPTERS, read_corpus
from worker.pipeline.assign import assign

REF = "sentence-transformers/all-MiniLM-L6-v2"
LABELS = ["Internet protocols", "Numbers and maths", "Files and folders"]  # one per chapter of CHAPTERS


@dataclass
class Fitted:
    texts: list[str]
    chapter: np.ndarray  # (n,) index into CHAPTERS
    held_out: list[str]
    held_out_chapter: np.ndarray  # (m,)
    representations: list
    doc_topics: np.ndarray  # (n,) int32
    model: object  # the fitted BERTopic

    def topic_of(self, chapter: int) -> int:
        """The topic most of a chapter's documents are in (BERTopic numbers topics by size, not by our ids)."""
        members = self.doc_topics[(self.chapter == chapter) & (self.doc_topics >= 0)]
        return Counter(members.tolist()).most_common(1)[0][0]


@pytest.fixture(scope="module")
def fitted(embedder) -> Fitted:
    """50 paragraphs of each chapter of CHAPTERS, fitted with the chapter as the cluster and two paragraphs of each
    as outliers, and the next 7 paragraphs of each chapter held out."""
    records = read_corpus("python_docs.jsonl")
    texts, chapter, held_out, held_out_chapter = [], [], [], []
    for number, name in enumerate(CHAPTERS):
        paragraphs = [r["text"] for r in records if r["label"] == name and len(r["text"].split()) > 15]
        texts += paragraphs[:50]
        chapter += [number] * 50
        held_out += paragraphs[50:57]
        held_out_chapter += [number] * 7
    chapter = np.array(chapter)
    clusters = chapter.copy()
    clusters[[5, 30, 55, 80, 105, 130]] = -1

    from worker.pipeline.represent import represent

    embeddings = embedder.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    representations, doc_topics, model = represent(texts, embeddings, clusters, embedder)
    return Fitted(texts, chapter, held_out, np.array(held_out_chapter), representations, doc_topics, model)


def load_from_zip(archive: bytes, tmp_path, embedder):
    """As a notebook user would: save the download, unzip it, BERTopic.load the folder."""
    from bertopic import BERTopic

    (tmp_path / "model.zip").write_bytes(archive)
    with zipfile.ZipFile(tmp_path / "model.zip") as z:
        z.extractall(tmp_path)
    return BERTopic.load(str(tmp_path / FOLDER), embedding_model=embedder)


def test_a_notebook_gets_the_services_topics_and_assigns_new_documents_as_the_service_does(fitted, embedder, tmp_path):
    from worker.pipeline.export import model_archive

    labels = {fitted.topic_of(chapter): label for chapter, label in enumerate(LABELS)}
    moved = fitted.doc_topics.copy()
    mover = int(np.flatnonzero(moved == fitted.topic_of(0))[0])
    moved[mover] = fitted.topic_of(1)  # the user moved one document
    archive = with_edits(model_archive(fitted.model, REF), labels, moved, readme=readme_text("python docs", REF))

    loaded = load_from_zip(archive, tmp_path, embedder)
    info = loaded.get_topic_info()
    sizes = Counter(moved.tolist())
    assert info.Topic.tolist() == [-1, 0, 1, 2]
    assert info.Count.tolist() == [sizes[t] for t in info.Topic]
    assert sizes[fitted.topic_of(0)] == (fitted.doc_topics == fitted.topic_of(0)).sum() - 1
    assert info.CustomName.tolist() == [info.Name[0]] + [labels[t] for t in (0, 1, 2)]
    assert loaded.topics_ == moved.tolist()
    for topic in fitted.representations:
        assert [word for word, _ in loaded.get_topic(topic.topic)][:10] == topic.keywords
    readme = (tmp_path / FOLDER / "README.txt").read_text()
    assert f'BERTopic.load("{FOLDER}"' in readme and f"bertopic=={version('bertopic')}" in readme

    predicted, probabilities = loaded.transform(fitted.held_out)
    topics, similarity = assign(embedder.encode(fitted.held_out), *topic_embeddings(archive))
    assert list(predicted) == topics.tolist()
    np.testing.assert_allclose(probabilities, similarity, rtol=1e-6)
    own = [fitted.topic_of(chapter) for chapter in fitted.held_out_chapter]
    assert (topics == own).mean() >= 0.8, (topics, own)


def test_a_model_whose_outliers_were_all_moved_still_transforms_as_fitted(fitted, embedder, tmp_path):
    """BERTopic reads "row 0 is topic -1" from -1 being among the topic sizes, so an emptied -1 must stay there."""
    from worker.pipeline.export import model_archive

    archive = model_archive(fitted.model, REF)
    moved = np.where(fitted.doc_topics < 0, fitted.topic_of(2), fitted.doc_topics)
    loaded = load_from_zip(with_edits(archive, {}, moved), tmp_path, embedder)

    assert loaded.get_topic_info().Count.tolist()[0] == 0
    assert list(loaded.transform(fitted.held_out)[0]) == list(fitted.model.transform(fitted.held_out)[0])


# -- fast unit tests -------------------------------------------------------------------------------------------


def small_archive(custom_labels=None) -> bytes:
    """A zip laid out as model_archive writes one: three topics (-1, 0, 1) of five documents, 2-D embeddings."""
    from safetensors.numpy import save

    words = {"-1": [["the", 0.1]], "0": [["http", 0.5], ["url", 0.4]], "1": [["float", 0.6]]}
    topics = {
        "topic_representations": words,
        "topics": [0, 0, -1, 1, 1],
        "topic_sizes": {"0": 2, "1": 2, "-1": 1},
        "topic_mapper": [[-1, -1], [0, 0], [1, 1]],
        "topic_labels": {"-1": "-1_the", "0": "0_http_url", "1": "1_float"},
        "custom_labels": custom_labels,
        "_outliers": 1,
        "topic_aspects": {},
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr(f"{FOLDER}/config.json", json.dumps({"embedding_model": REF}))
        z.writestr(TOPICS, json.dumps(topics))
        z.writestr(TOPIC_EMBEDDINGS, save({"topic_embeddings": np.array([[1, 1], [1, 0], [0, 1]], dtype=np.float32)}))
    return buffer.getvalue()


def read_topics(archive: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        return json.loads(z.read(TOPICS))


def test_edits_become_bertopic_custom_labels_and_topic_sizes():
    original = small_archive()
    edited = with_edits(original, {1: "Floating point"}, [0, 1, 1, 1, 1])
    topics = read_topics(edited)

    assert topics["custom_labels"] == ["-1_the", "0_http_url", "Floating point"]  # -1 first, unlabelled keep names
    assert topics["topics"] == [0, 1, 1, 1, 1]
    assert topics["topic_sizes"] == {"-1": 0, "0": 1, "1": 4}
    with zipfile.ZipFile(io.BytesIO(original)) as before, zipfile.ZipFile(io.BytesIO(edited)) as after:
        assert sorted(after.namelist()) == sorted(before.namelist())
        assert all(after.read(name) == before.read(name) for name in before.namelist() if name != TOPICS)
    matrix, ids, outliers = topic_embeddings(edited)
    assert (ids, outliers, matrix.shape, matrix.dtype) == ([-1, 0, 1], 1, (3, 2), np.float32)


def test_edits_keep_earlier_custom_labels_and_document_topics_when_not_given():
    edited = with_edits(small_archive(["Noise", "Web", "Numbers"]), {0: "Internet"}, readme="how to load")
    topics = read_topics(edited)
    assert topics["custom_labels"] == ["Noise", "Internet", "Numbers"]
    assert topics["topics"] == [0, 0, -1, 1, 1] and topics["topic_sizes"] == {"0": 2, "1": 2, "-1": 1}
    with zipfile.ZipFile(io.BytesIO(edited)) as z:
        assert z.read(f"{FOLDER}/README.txt") == b"how to load"


@pytest.mark.parametrize(
    ("labels", "doc_topics", "message"),
    [
        ({5: "Nowhere"}, None, "labels for topics the model does not have: [5]"),
        ({}, [0, 1, 2, 1, 1], "documents in topics the model does not have: [2]"),
        ({}, [0, 1], "2 document topics for a model of 5 documents"),
    ],
)
def test_edits_the_model_cannot_carry_are_refused(labels, doc_topics, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        with_edits(small_archive(), labels, doc_topics)


def test_assign_picks_the_most_similar_topic_row_shifted_by_the_outlier_row():
    matrix = np.array([[1, 1], [1, 0], [0, 1]], dtype=np.float32)  # topics -1, 0, 1
    docs = np.array([[2, 0.1], [0.1, 3], [1, 1.1], [0, -1]], dtype=np.float32)
    topics, similarity = assign(docs, matrix, [-1, 0, 1], 1)
    assert topics.tolist() == [0, 1, -1, 0] and topics.dtype == np.int32
    assert similarity.dtype == np.float32 and similarity[3] == pytest.approx(0.0, abs=1e-6)

    topics, _ = assign(docs, matrix[1:], [0, 1], 0)  # a model without outliers
    assert topics.tolist() == [0, 1, 1, 0]
    with pytest.raises(ValueError):
        assign(docs, matrix, [0, 1, 2], 1)
