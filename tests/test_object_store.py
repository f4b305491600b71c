"""The artifact store's contract on a local folder, on fsspec's local files and on a real S3-compatible server
(moto's server in its own process), and one job run by the workers and downloaded from the web through S3, with
the web and the worker on different data directories so a shared disk cannot hide a bug."""

import io
import tracemalloc
import zipfile

import numpy as np
import pytest

from shared.bertopic_archive import topic_embeddings
from shared.settings import Settings
from shared.storage import (
    FsspecArtifactStore, LocalArtifactStore, check_store, job_prefix, load_array, load_rows, map_key, model_key, open_store,
    save_array, save_array_parts,
)
from tests.conftest import read_corpus
from tests.factories import make_job
from tests.s3_support import start_s3_server
from tests.test_stages import ScriptedLabeler, drive
from worker.pipeline.run import PipelineConfig
from worker.stages import Chunking, StageRunner

MiB = 2**20
PART = 5 * MiB  # S3's smallest multipart part: a few MB already go up in several parts


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    server = start_s3_server(tmp_path_factory.mktemp("s3"))
    yield server
    server.stop()


@pytest.fixture
def bucket(s3):
    return s3.new_bucket()


@pytest.fixture(params=["local", "fsspec-file", "s3"])
def kind(request):
    return request.param


@pytest.fixture
def connect(kind, request, tmp_path):
    """Makes a store on this test's location, a new client each call (as another machine would have)."""
    if kind == "local":
        return lambda: LocalArtifactStore(tmp_path / "artifacts")
    if kind == "fsspec-file":
        return lambda: FsspecArtifactStore(f"file://{tmp_path / 'artifacts'}", skip_instance_cache=True)
    s3, bucket = request.getfixturevalue("s3"), request.getfixturevalue("bucket")
    return lambda: FsspecArtifactStore(f"s3://{bucket}/topicq",
                                       **s3.options(default_block_size=PART, skip_instance_cache=True))


@pytest.fixture
def store(connect):
    return connect()


def test_put_get_exists_and_overwrite(store):
    key = job_prefix("j1") + "clusters.json"
    assert store.get(key) is None and not store.exists(key)
    store.put(key, b'{"topics": 3}')
    assert store.get(key) == b'{"topics": 3}' and store.exists(key)
    store.put(key, b'{"topics": 4, "longer": true}')
    assert store.get(key) == b'{"topics": 4, "longer": true}'
    assert not store.exists("jobs/j1")  # a folder-like prefix is no object
    store.put("jobs//j1/../j1/odd.json", b"1")  # spelled oddly, still inside the store: the same key as clean
    assert store.get("jobs/j1/odd.json") == b"1"


@pytest.mark.parametrize("key", ["../outside", "/etc/passwd", "jobs/../../outside", "", "."])
def test_keys_outside_the_store_are_refused(store, tmp_path, key):
    for call in (lambda: store.put(key, b"x"), lambda: store.get(key), lambda: store.exists(key)):
        with pytest.raises(ValueError, match="escapes the store"):
            call()
    with pytest.raises(ValueError):
        store.delete_prefix(key.rstrip("/") + "/")
    assert not (tmp_path / "outside").exists()


def test_delete_prefix_removes_one_jobs_objects_and_nothing_else(store):
    for key in ("jobs/a/model.zip", "jobs/a/labels/0.json", "jobs/ab/model.zip", "embeddings/e.npy"):
        store.put(key, key.encode())
    store.delete_prefix(job_prefix("a"))
    assert [store.exists(k) for k in ("jobs/a/model.zip", "jobs/a/labels/0.json")] == [False, False]
    assert store.get("jobs/ab/model.zip") == b"jobs/ab/model.zip" and store.exists("embeddings/e.npy")
    store.delete_prefix(job_prefix("never-there"))  # nothing to delete is no error
    with pytest.raises(ValueError, match="ending in '/'"):
        store.delete_prefix("jobs/ab")  # would also take jobs/abc/


def test_large_objects_and_arrays_round_trip_in_several_parts(store):
    data = np.random.default_rng(0).bytes(6 * MiB)
    store.put("jobs/big/blob", data)
    assert store.get("jobs/big/blob") == data
    vectors = np.random.default_rng(1).standard_normal((8_000, 384)).astype(np.float32)  # 11.7 MiB
    save_array(store, "embeddings/v.npy", vectors)
    loaded = load_array(store, "embeddings/v.npy")
    assert loaded.dtype == np.float32 and np.array_equal(loaded, vectors)
    assert load_array(store, "embeddings/missing.npy") is None


def test_an_array_is_written_from_its_parts_one_at_a_time(store):
    rng = np.random.default_rng(2)
    parts = [rng.standard_normal((n, 384)).astype(np.float32) for n in (3_000, 3_000, 0, 1_500)]  # 11 MiB
    save_array_parts(store, "embeddings/p.npy", iter(parts), (7_500, 384), np.float32)
    assert np.array_equal(load_array(store, "embeddings/p.npy"), np.concatenate(parts))
    with pytest.raises(ValueError, match="rows"):  # a chunk went missing: no matrix rather than a short one
        save_array_parts(store, "embeddings/short.npy", iter(parts), (8_000, 384), np.float32)
    assert not store.exists("embeddings/short.npy")


def test_a_write_is_never_seen_half_done_and_a_failed_one_leaves_the_old_object(store, kind, tmp_path, request):
    store.put("jobs/w/model.zip", b"the old model")
    with pytest.raises(RuntimeError, match="worker died"):
        with store.writer("jobs/w/model.zip") as handle:
            handle.write(b"n" * (2 * PART + 1))  # more than one part is already on its way up
            handle.flush()
            assert store.get("jobs/w/model.zip") == b"the old model"
            raise RuntimeError("worker died")
    assert store.get("jobs/w/model.zip") == b"the old model"
    with pytest.raises(RuntimeError):
        with store.writer("jobs/w/new.npy") as handle:
            handle.write(b"half")
            raise RuntimeError
    assert store.get("jobs/w/new.npy") is None
    if kind == "s3":  # the parts sent were thrown away, not left to be billed
        s3, bucket = request.getfixturevalue("s3"), request.getfixturevalue("bucket")
        assert s3.uploads_in_progress(bucket) == []
        assert s3.keys(bucket, "topicq/jobs/w/") == ["topicq/jobs/w/model.zip"]
    else:
        assert sorted(p.name for p in (tmp_path / "artifacts" / "jobs" / "w").iterdir()) == ["model.zip"]


def test_another_client_sees_writes_and_deletes_at_once(connect):
    """No listing cache: a worker on another machine finds what this one wrote a moment ago, and not what it
    deleted."""
    here, there = connect(), connect()
    assert not there.exists("jobs/x/clusters.npz")
    here.put("jobs/x/clusters.npz", b"clusters")
    assert there.exists("jobs/x/clusters.npz") and there.get("jobs/x/clusters.npz") == b"clusters"
    there.delete_prefix("jobs/x/")
    assert not here.exists("jobs/x/clusters.npz") and here.get("jobs/x/clusters.npz") is None


def test_an_array_is_read_into_place_without_a_second_copy(store):
    vectors = np.ones((22_000, 384), dtype=np.float32)  # 32.2 MiB
    save_array(store, "embeddings/ones.npy", vectors)
    tracemalloc.start()
    try:
        loaded = load_array(store, "embeddings/ones.npy")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert loaded.shape == vectors.shape
    # The array plus a few read blocks (5 MiB here: s3fs holds the last block while the next one arrives, and
    # the HTTP client joins its pieces); reading the bytes and then parsing them would hold the array twice.
    assert peak < vectors.nbytes + 4 * PART < 2 * vectors.nbytes, (peak / MiB, vectors.nbytes / MiB)


def test_chosen_rows_of_an_array_are_read_in_one_pass_by_blocks(store):
    array = np.arange(50 * 3, dtype=np.float32).reshape(50, 3)
    save_array(store, "embeddings/rows.npy", array)
    rows = np.array([0, 4, 5, 17, 31, 49])
    assert (load_rows(store, "embeddings/rows.npy", rows, block=8) == array[rows]).all()
    assert load_rows(store, "embeddings/rows.npy", np.array([], dtype=int)).shape == (0, 3)
    assert load_rows(store, "embeddings/missing.npy", rows) is None


def test_settings_choose_the_store_the_web_and_the_workers_share(tmp_path, s3, bucket, monkeypatch):
    local = open_store(Settings(data_dir=tmp_path / "data", _env_file=None))
    assert isinstance(local, LocalArtifactStore) and local.root == tmp_path / "data" / "artifacts"
    # What a user sets for S3 or MinIO: a URL and the endpoint, credentials in the backend's own variables.
    monkeypatch.setenv("TOPICQ_ARTIFACT_URL", f"s3://{bucket}/prod")
    monkeypatch.setenv("TOPICQ_ARTIFACT_OPTIONS", f'{{"client_kwargs": {{"endpoint_url": "{s3.endpoint}"}}}}')
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    remote = open_store(Settings(_env_file=None))
    remote.put("jobs/s/map.png", b"\x89PNG")
    assert s3.keys(bucket) == ["prod/jobs/s/map.png"]
    check_store(remote)
    assert s3.keys(bucket) == ["prod/jobs/s/map.png"]  # the probe cleaned up after itself
    with pytest.raises(ValueError, match="nosuch"):  # an unknown scheme fails where the store is opened
        open_store(Settings(artifact_url="nosuch://bucket/x", _env_file=None))
    # A bucket nobody made: the worker's start-up check says so (it exits rather than take work).
    with pytest.raises(RuntimeError, match="no-such-bucket.*not usable.*bucket does not exist"):
        check_store(open_store(Settings(artifact_url="s3://no-such-bucket/prod", _env_file=None)))


def test_a_job_runs_on_workers_and_downloads_from_the_web_through_s3_alone(
        s3, bucket, settings, sessions, make_app, embedder, tmp_path):
    """Worker and web each on their own data directory, sharing only the database and the bucket."""
    options = s3.options()
    worker_settings = settings.model_copy(update={
        "data_dir": tmp_path / "worker", "artifact_url": f"s3://{bucket}/topicq", "artifact_options": options})
    web_settings = worker_settings.model_copy(update={"data_dir": tmp_path / "web"})
    records = read_corpus("python_docs.jsonl")
    chapters = ("Internet Protocols and Support", "Numeric and Mathematical Modules", "File and Directory Access")
    texts = [r["text"] for chapter in chapters
             for r in [r for r in records if r["label"] == chapter and len(r["text"].split()) >= 12][:20]]
    job_id = make_job(sessions, texts, params={"min_topic_size": 5})
    runner = StageRunner(
        factory=sessions, store=open_store(worker_settings), embedding_model_name="test-model",
        embedding_model_ref="sentence-transformers/all-MiniLM-L6-v2",
        config=PipelineConfig(embedding_batch_size=32, doc_tokens=40), embedder=lambda: embedder,
        labeler=lambda: ScriptedLabeler(), worker="worker-elsewhere", chunking=Chunking(30, 4, 4),
        heartbeat_seconds=0.2)
    outcomes = drive(runner, sessions, job_id)
    assert outcomes and all(o.endswith(": done") for o in outcomes), outcomes
    stored = s3.keys(bucket)
    assert {f"topicq/{model_key(job_id)}", f"topicq/{map_key(job_id, 'png')}"} <= set(stored)
    assert any(k.startswith("topicq/embeddings/") for k in stored)

    client = make_app(web_settings).test_client()
    page = client.get(f"/jobs/{job_id}")
    assert page.status_code == 200 and b'id="model-download"' in page.data and b"map.png" in page.data
    archive = client.get(f"/api/v1/jobs/{job_id}/model.zip")
    assert archive.status_code == 200 and archive.mimetype == "application/zip"
    assert "topics.json" in {name.rsplit("/", 1)[-1] for name in zipfile.ZipFile(io.BytesIO(archive.data)).namelist()}
    matrix, ids, _outliers = topic_embeddings(archive.data)
    assert matrix.shape == (len(ids), 384)
    png = client.get(f"/api/v1/jobs/{job_id}/map.png")
    assert png.status_code == 200 and png.data.startswith(b"\x89PNG")
    # Neither machine kept an artifact on its own disk.
    assert not (tmp_path / "worker" / "artifacts").exists() and not (tmp_path / "web" / "artifacts").exists()

    assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 204
    assert s3.keys(bucket, f"topicq/{job_prefix(job_id)}") == []
    assert any(k.startswith("topicq/embeddings/") for k in s3.keys(bucket))  # the cache outlives the job
