"""The ONNX embedder with the real bundled model: the same vectors as torch float32, prepared once, and usable
wherever the SentenceTransformer is (the embedding stage with its windows, BERTopic's KeyBERTInspired)."""

import numpy as np
import pytest

from shared.settings import BUNDLED_EMBEDDING_MODEL
from tests.conftest import read_corpus
from worker import embedders
from worker.embedders import OnnxTransformer, choose_embedding_backend, load_embedding_model, load_onnx_embedder, onnx_file_name
from worker.models import embedding_source
from worker.pipeline.embed import embed

SOURCE = embedding_source(BUNDLED_EMBEDDING_MODEL)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def onnx_int8(model_dir):
    return load_onnx_embedder(SOURCE, model_dir, "int8")


@pytest.fixture(scope="session")
def torch_float32():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(SOURCE, device="cpu")


@pytest.fixture(scope="session")
def paragraphs():
    return [r["text"] for r in read_corpus("python_docs.jsonl", limit=50, every=290)]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)


def test_int8_vectors_agree_with_torch_float32(onnx_int8, torch_float32, paragraphs):
    ours = onnx_int8.encode(paragraphs, normalize_embeddings=True)
    theirs = torch_float32.encode(paragraphs, normalize_embeddings=True)
    assert ours.shape == theirs.shape == (50, 384) and ours.dtype == np.float32
    assert cosines(ours, theirs).mean() >= 0.99 and cosines(ours, theirs).min() >= 0.97


def test_float32_vectors_are_torch_float32s(model_dir, onnx_int8, torch_float32, paragraphs):
    model = load_onnx_embedder(SOURCE, model_dir, "float32")  # exported already by the int8 fixture
    assert cosines(model.encode(paragraphs[:20]), torch_float32.encode(paragraphs[:20])).min() > 0.9999


def test_the_surface_the_pipeline_uses_is_unchanged(onnx_int8, torch_float32):
    assert isinstance(onnx_int8[0].model, OnnxTransformer)
    assert onnx_int8.max_seq_length == torch_float32.max_seq_length == 256
    assert onnx_int8.get_embedding_dimension() == 384
    assert onnx_int8.tokenizer.is_fast and str(onnx_int8.device) == "cpu"


def test_preparation_happens_once(model_dir, onnx_int8, monkeypatch):
    path = onnx_int8[0].model.path
    written = path.stat().st_mtime_ns

    def no_export(*_args, **_kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(embedders, "_export", no_export)
    monkeypatch.setattr(embedders, "_quantize", no_export)
    again = load_onnx_embedder(SOURCE, model_dir, "int8")
    assert again[0].model.path == path and path.stat().st_mtime_ns == written
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(["float32.onnx", path.name])  # no partial files


def test_the_embedding_stage_with_windows(onnx_int8, torch_float32):
    articles = [r["text"] for r in read_corpus("news_sections.jsonl") if len(r["text"].split()) > 900][:3]
    texts = ["Sockets, ports and TCP connections.", *articles]
    ours = embed(texts, onnx_int8, batch_size=8, max_windows=4)
    theirs = embed(texts, torch_float32, batch_size=8, max_windows=4)
    assert ours.shape == (4, 384) and np.allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)
    assert cosines(ours, theirs).min() >= 0.98
    assert ours[1] @ embed(texts[1:2], onnx_int8, max_windows=1)[0] < 0.99  # the later windows count


def test_keybert_keywords_through_represent(onnx_int8):
    from worker.pipeline.represent import represent

    records = [r for r in read_corpus("python_docs.jsonl", every=40) if r["label"] in {
        "Internet Protocols and Support", "Concurrent Execution", "Data Types"}]
    texts = [r["text"] for r in records]
    clusters = np.unique([r["label"] for r in records], return_inverse=True)[1]
    topics, _, _ = represent(texts, embed(texts, onnx_int8), clusters, onnx_int8)
    assert len(topics) == 3
    for topic in topics:  # KeyBERTInspired re-ranks the c-TF-IDF words by their embeddings' closeness to the topic
        assert len(topic.representations["KeyBERT"]) >= 5
        assert topic.representations["KeyBERT"] != topic.keywords


def test_auto_loads_the_onnx_embedder_on_a_cpu(model_dir, onnx_int8):
    model, description = load_embedding_model(SOURCE, model_dir, "auto", "cpu")
    assert isinstance(model[0].model, OnnxTransformer) and description.startswith("onnx int8")
    model, description = load_embedding_model(SOURCE, model_dir, "torch", "cpu", "float32")
    assert not isinstance(model[0].model, OnnxTransformer) and description.startswith("torch float32")


@pytest.mark.parametrize(
    "setting, device, fast_bf16, expected",
    [
        ("auto", "cpu", False, ("onnx", "int8")),
        ("auto", "cpu", True, ("onnx", "int8")),
        ("auto", "cuda", False, ("torch", "auto")),
        ("torch", "cpu", True, ("torch", "auto")),
        ("onnx", "cpu", False, ("onnx", "float32")),
        ("onnx-int8", "cpu", True, ("onnx", "int8")),
        ("onnx-int8", "cuda", True, ("torch", "auto")),
    ],
)
def test_choose_embedding_backend(setting, device, fast_bf16, expected):
    backend, kind, reason = choose_embedding_backend(setting, device, fast_bf16)
    assert (backend, kind) == expected and reason


@pytest.mark.parametrize(
    "setting, device, fast_bf16, expected",
    [
        ("auto", "cpu", True, ("torch", "auto")),  # bfloat16 there
        ("auto", "cpu", False, ("onnx", "float32")),
        ("auto", "cuda", False, ("torch", "auto")),
        ("onnx-int8", "cpu", True, ("onnx", "int8")),  # asked for: as asked
    ],
)
def test_auto_keeps_int8_away_from_a_model_it_spoils(setting, device, fast_bf16, expected):
    """MPNet's int8 vectors had mean cosine 0.90 to its float32 ones (MiniLM's 0.99)."""
    backend, kind, reason = choose_embedding_backend(setting, device, fast_bf16, int8=False)
    assert (backend, kind) == expected and reason


def test_only_mpnet_is_marked_as_spoilt_by_int8():
    from worker.bundled_embedding import int8_faithful

    assert int8_faithful(BUNDLED_EMBEDDING_MODEL) and int8_faithful("/models/some-folder")
    assert not int8_faithful("sentence-transformers/all-mpnet-base-v2")
    assert not int8_faithful("/root/.cache/topicq/models/all-mpnet-base-v2")


def test_an_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="onnx-int8"):
        choose_embedding_backend("openvino", "cpu", False)


def test_cpus_without_vnni_get_7_bit_weights():
    assert onnx_file_name("int8", vnni=True) == "int8.onnx"
    assert onnx_file_name("int8", vnni=False) == "int8-7bit.onnx"
    assert onnx_file_name("float32", vnni=False) == "float32.onnx"
