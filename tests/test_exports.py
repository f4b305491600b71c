"""Exports of a succeeded job on a real database (SQLite and PostgreSQL): documents as CSV, JSON lines and
Parquet (streamed), the model archive and the static map."""

import csv
import io
import json
import math
import tracemalloc
import zipfile

import numpy as np
import pyarrow.parquet as pq
import pytest
from sqlalchemy import update

from shared import jobs
from shared.db import transaction
from shared.models import Document, JobArray, Topic
from shared.storage import LocalArtifactStore, map_key, model_key
from tests.factories import make_finished_job, make_job
from web import exports

FORMULA = '=HYPERLINK("http://evil.example","click")'
FORMATS = {"csv": "text/csv", "jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}


@pytest.fixture
def client(app):
    if "exports" not in app.blueprints:
        app.register_blueprint(exports.bp)
    return app.test_client()


def store(settings) -> LocalArtifactStore:
    return LocalArtifactStore(settings.data_dir / "artifacts")


def rename(sessions, job_id: str, topic: int, label: str) -> None:
    with transaction(sessions) as session:
        session.execute(update(Topic).where(Topic.job_id == job_id, Topic.topic == topic).values(custom_label=label))


def edited_job(sessions, n_docs: int = 30) -> str:
    """A finished job (see factories: topic ``i % 3 - 1``, the last document an outlier before reduction, x = i,
    y = -i) whose topic 0 is renamed, document 4 looks like a formula and document 2 has a title."""
    job_id = make_finished_job(sessions, n_docs=n_docs)
    rename(sessions, job_id, 0, "Renamed topic")
    with transaction(sessions) as session:
        session.execute(update(Document).where(Document.job_id == job_id, Document.idx == 4).values(text=FORMULA))
        session.execute(update(Document).where(Document.job_id == job_id, Document.idx == 2).values(title="A title"))
    return job_id


def expected_rows(n_docs: int) -> list[dict]:
    labels = {0: ("Renamed topic", "custom"), 1: ("Second", "keywords"), -1: ("", "")}
    rows = []
    for i in range(n_docs):
        topic = i % 3 - 1
        rows.append({
            "index": i, "title": "A title" if i == 2 else None, "text": FORMULA if i == 4 else f"doc {i} text",
            "topic": topic, "label": labels[topic][0], "label_source": labels[topic][1],
            "original_topic": -1 if i == n_docs - 1 else topic, "x": float(i), "y": -float(i),
        })
    return rows


def read_csv(data: bytes) -> list[dict]:
    reader = csv.DictReader(io.StringIO(data.decode()))
    assert tuple(reader.fieldnames) == exports.COLUMNS
    ints, floats = ("index", "topic", "original_topic"), ("x", "y")
    return [
        {k: int(v) if k in ints else float(v) if k in floats else (v or None) if k == "title" else v
         for k, v in row.items()}
        for row in reader
    ]


def read_jsonl(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode().splitlines()]


def read_parquet(data: bytes) -> list[dict]:
    table = pq.read_table(io.BytesIO(data))
    assert tuple(table.column_names) == exports.COLUMNS
    return table.to_pylist()


READERS = {"csv": read_csv, "jsonl": read_jsonl, "parquet": read_parquet}


@pytest.mark.parametrize("ext", FORMATS)
def test_documents_export_round_trips_with_shown_labels_and_empty_outliers(client, sessions, ext):
    job_id = edited_job(sessions)
    response = client.get(f"/api/v1/jobs/{job_id}/documents.{ext}")
    assert response.status_code == 200
    assert response.mimetype == FORMATS[ext]
    assert response.headers["Content-Disposition"] == f'attachment; filename="documents-{job_id}.{ext}"'
    expected = expected_rows(30)
    if ext == "csv":
        expected[4]["text"] = "'" + FORMULA  # a spreadsheet shows it as text instead of running it
    assert READERS[ext](response.get_data()) == expected


def test_exports_wait_for_the_job_to_succeed_and_need_a_known_job(client, sessions):
    from tests.test_api import assert_error

    queued = make_job(sessions)
    for path in ("documents.csv", "documents.jsonl", "documents.parquet", "model.zip", "map.png", "map.svg",
                 "provenance"):
        assert_error(client.get(f"/api/v1/jobs/{queued}/{path}"), 409, "not_ready", "queued")
        assert_error(client.get(f"/api/v1/jobs/no-such-job/{path}"), 404, "not_found", "no-such-job")
    finished = make_finished_job(sessions)
    assert_error(client.get(f"/api/v1/jobs/{finished}/documents.xml"), 404, "not_found")


def consume(response) -> list[int]:
    """Reads a streamed response to its end, as a client would; the size of each chunk as it arrived."""
    try:
        return [len(chunk) for chunk in response.response]
    finally:
        response.close()


@pytest.mark.parametrize("ext", FORMATS)
def test_a_large_export_streams_page_by_page(client, sessions, ext):
    job_id = make_finished_job(sessions, n_docs=25_000)
    response = client.get(f"/api/v1/jobs/{job_id}/documents.{ext}")
    chunks = list(response.response)
    response.close()
    pages = math.ceil(25_000 / exports.PAGE_ROWS)
    assert pages >= 3
    # The Parquet footer is written after the last row group.
    assert len(chunks) == pages + (ext == "parquet") and all(chunks)
    rows = READERS[ext](b"".join(chunks))
    assert [r["index"] for r in rows] == list(range(25_000))
    assert rows[24_997] == {"index": 24_997, "title": None, "text": "doc 24997 text", "topic": 0, "label": "A label",
                            "label_source": "llm", "original_topic": 0, "x": 24_997.0, "y": -24_997.0}
    if ext == "parquet":
        assert pq.ParquetFile(io.BytesIO(b"".join(chunks))).num_row_groups == pages


def peak_bytes(client, url: str) -> int:
    """The most Python memory the request and the download of ``url`` had allocated at any one time."""
    tracemalloc.start()
    try:
        total = sum(consume(client.get(url)))
        assert total > 0
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_export_memory_stays_flat_as_the_job_grows(client, sessions, settings):
    """Four times the documents must not take four times the memory: only a page is held at a time."""
    if not settings.sqlalchemy_url.startswith("sqlite"):
        pytest.skip("measured on SQLite: the paging is the same code on both (PostgreSQL gave the same peaks)")
    small, large = make_finished_job(sessions, n_docs=25_000), make_finished_job(sessions, n_docs=100_000)
    for ext in FORMATS:
        peaks = [peak_bytes(client, f"/api/v1/jobs/{job_id}/documents.{ext}") for job_id in (small, large)]
        print(f"{ext}: peak Python memory {peaks[0] / 2**20:.2f} MiB for 25k documents, "
              f"{peaks[1] / 2**20:.2f} MiB for 100k")
        assert peaks[1] < 3 * peaks[0], (ext, peaks)


def test_an_abandoned_download_holds_no_database_connection(client, app, sessions, monkeypatch):
    monkeypatch.setattr(exports, "PAGE_ROWS", 10)
    job_id = make_finished_job(sessions, n_docs=30)
    pool = app.extensions["topicq"]["sessions"].kw["bind"].pool
    response = client.get(f"/api/v1/jobs/{job_id}/documents.csv")
    chunks = iter(response.response)
    assert next(chunks).decode().splitlines()[1].startswith("0,,doc 0 text,-1,,,-1,")
    assert pool.checkedout() == 0  # a slow client between two pages
    response.close()  # the client went away
    assert pool.checkedout() == 0


def test_a_job_deleted_during_its_export_breaks_the_download_instead_of_truncating_it(client, sessions, monkeypatch):
    monkeypatch.setattr(exports, "PAGE_ROWS", 10)
    job_id = make_finished_job(sessions, n_docs=30)
    response = client.get(f"/api/v1/jobs/{job_id}/documents.jsonl")
    chunks = iter(response.response)
    assert len(next(chunks).splitlines()) == 10
    with transaction(sessions) as session:
        assert jobs.delete_job(session, job_id)
    with pytest.raises(RuntimeError, match="exported 10 of 30"):
        next(chunks)
    response.close()


@pytest.mark.parametrize("ext,mimetype", [("png", "image/png"), ("svg", "image/svg+xml")])
def test_the_map_is_shown_inline_or_downloaded(client, settings, sessions, ext, mimetype):
    from tests.test_api import assert_error

    job_id = make_finished_job(sessions)
    assert_error(client.get(f"/api/v1/jobs/{job_id}/map.{ext}"), 409, "not_available", ext.upper())
    image = b"\x89PNG\r\n\x1a\n fake" if ext == "png" else b'<svg xmlns="http://www.w3.org/2000/svg"/>'
    store(settings).put(map_key(job_id, ext), image)
    shown = client.get(f"/api/v1/jobs/{job_id}/map.{ext}")
    assert shown.status_code == 200 and shown.mimetype == mimetype and shown.get_data() == image
    assert shown.headers["Content-Disposition"] == f'inline; filename="map-{job_id}.{ext}"'
    downloaded = client.get(f"/api/v1/jobs/{job_id}/map.{ext}?download=1")
    assert downloaded.get_data() == image
    assert downloaded.headers["Content-Disposition"] == f'attachment; filename="map-{job_id}.{ext}"'
    again = client.get(f"/api/v1/jobs/{job_id}/map.{ext}", headers={"If-None-Match": shown.headers["ETag"]})
    assert again.status_code == 304


def test_a_job_without_a_model_archive_says_so(client, sessions):
    from tests.test_api import assert_error

    job_id = make_finished_job(sessions)
    assert_error(client.get(f"/api/v1/jobs/{job_id}/model.zip"), 409, "not_available", "no model archive")


def test_the_model_download_carries_renames_and_current_topics(client, settings, sessions):
    """Built on a minimal topics.json: a real archive needs a fitted BERTopic (worker/pipeline/export.py)."""
    archive_module = pytest.importorskip("shared.bertopic_archive", reason="shared/bertopic_archive.py is not there")
    job_id = make_finished_job(sessions, n_docs=30)
    rename(sessions, job_id, 0, "Renamed topic")
    saved_topics = [i % 3 - 1 for i in range(30)]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(archive_module.TOPICS, json.dumps({
            "topics": saved_topics, "topic_representations": {str(t): [["w", 0.5]] for t in (-1, 0, 1)},
            "topic_labels": {"-1": "-1_the_of", "0": "0_alpha_beta", "1": "1_gamma"}, "custom_labels": None,
            "topic_sizes": {"-1": 10, "0": 10, "1": 10}, "_outliers": 1,
        }))
        zf.writestr(f"{archive_module.FOLDER}/config.json", "{}")
    store(settings).put(model_key(job_id), archive.getvalue())
    moved = [{0: 1, 1: 0}.get(t, t) for t in saved_topics[:-1]] + [-1]  # edits since the worker saved the model
    with transaction(sessions) as session:
        session.execute(update(JobArray).where(JobArray.job_id == job_id, JobArray.name == "topic")
                        .values(data=np.array(moved, dtype="<i4").tobytes()))
    response = client.get(f"/api/v1/jobs/{job_id}/model.zip")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert response.headers["Content-Disposition"] == f'attachment; filename="model-{job_id}.zip"'
    with zipfile.ZipFile(io.BytesIO(response.get_data())) as zf:
        topics = json.loads(zf.read(archive_module.TOPICS))
        assert zf.read(f"{archive_module.FOLDER}/config.json") == b"{}"
    assert topics["topics"] == moved
    assert topics["custom_labels"] == ["-1_the_of", "Renamed topic", "Second"]  # -1 keeps BERTopic's own name
    assert topics["topic_sizes"] == {"-1": 11, "0": 9, "1": 10}


def test_the_provenance_export_carries_every_labels_prompts_answers_and_labeller(client, sessions):
    from tests.factories import PROVENANCE

    job_id = make_finished_job(sessions)
    export = client.get(f"/api/v1/jobs/{job_id}/provenance").get_json()
    first, second = export["topics"]
    assert (first["topic"], first["label"], first["label_source"]) == (0, "A label", "llm")
    assert first["provenance"] == PROVENANCE  # prompts and raw answers exactly as sent and received
    assert second["provenance"] is None and second["label_source"] == "keywords"
    assert export["themes"][0]["theme"] == 0 and export["themes"][0]["provenance"]["labeler"]["model"] == "scripted-0.5b"
    download = client.get(f"/api/v1/jobs/{job_id}/provenance?download=1")
    assert f'attachment; filename="provenance-{job_id}.json"' == download.headers["Content-Disposition"]
