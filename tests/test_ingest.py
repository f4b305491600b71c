"""Large corpora in and out: a file upload parsed as a stream and stored in batches (all or nothing), the documents
read back in keyed batches, and the documents API paged with ``after``. On SQLite and PostgreSQL, with real
summaries from ../shared/data."""

from __future__ import annotations

import csv
import gzip
import io
import json

import numpy as np
import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from shared import corpus, jobs
from shared.db import transaction
from shared.models import Document, Job
from tests.conftest import DATA
from tests.factories import finish_job, make_job
from tests.forms import csrf_token

N = 6_000  # past one INSERT batch (jobs.INSERT_BATCH) and one read batch


@pytest.fixture(scope="module")
def summaries() -> list[str]:
    """N real one-line summaries of PyPI packages, in the file's order, without duplicates or blanks."""
    path = DATA / "pypi_summaries.jsonl.gz"
    if not path.exists():
        pytest.skip(f"corpus {path} is not there")
    seen: dict[str, None] = {}
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            text = " ".join(json.loads(line)["text"].split())
            if text:
                seen.setdefault(text)
            if len(seen) == N:
                break
    return list(seen)


@pytest.fixture
def client(settings, make_app):
    """The app without rate limits and with a cap of documents the tests can pass."""
    unlimited = {"rate_limit_submit": "1000000/minute", "max_documents": N}
    return make_app(settings.model_copy(update=unlimited)).test_client()


def as_file(texts: list[str], kind: str, titles: bool = True) -> bytes:
    if kind == "txt":
        return "\n".join(texts).encode()
    if kind == "csv":
        out = io.StringIO(newline="")
        writer = csv.writer(out)
        writer.writerow(["title", "text"])
        writer.writerows((f"package {i}", t) for i, t in enumerate(texts))
        return out.getvalue().encode()
    return "\n".join(json.dumps({"text": t, "title": f"package {i}"} if titles else {"text": t})
                     for i, t in enumerate(texts)).encode()


def upload(client, data: bytes, filename: str, path: str = "/api/v1/jobs", **fields: str):
    # The body encoded here, in memory: the test client would spool one past 500 kB to a file it leaves open.
    boundary, body = encode_multipart({
        "file": FileStorage(io.BytesIO(data), filename, content_type="text/plain"), "generate_labels": "false",
        **fields,
    })
    return client.post(path, data=body, content_type=f"multipart/form-data; boundary={boundary}")


def stored(sessions) -> tuple[int, int]:
    """How many jobs and how many document rows the database holds."""
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Job)), session.scalar(
            select(func.count()).select_from(Document))


@pytest.mark.parametrize("kind", ["jsonl", "csv", "txt"])
def test_an_uploaded_file_is_stored_whole_in_order_with_its_titles(client, sessions, summaries, kind):
    response = upload(client, as_file(summaries, kind), f"pypi.{kind}")
    assert response.status_code == 202, response.get_json()
    job = response.get_json()
    assert job["n_documents"] == N
    with sessions() as session:
        rows = session.execute(
            select(Document.idx, Document.text, Document.title)
            .where(Document.job_id == job["id"]).order_by(Document.idx)
        ).all()
    assert [r.idx for r in rows] == list(range(N))
    assert [r.text for r in rows] == summaries
    assert [r.title for r in rows] == ([None] * N if kind == "txt" else [f"package {i}" for i in range(N)])


def test_a_bad_line_near_the_end_is_a_400_naming_it_and_leaves_nothing(client, sessions, summaries):
    data = as_file(summaries[:-10], "jsonl") + b'\n{"text": "fine"}\n{"text": oops}\n'
    response = upload(client, data, "pypi.jsonl")
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "bad_corpus"
    assert error["message"] == f"line {N - 10 + 2} of the JSONL file is not valid JSON (Expecting value)"
    assert stored(sessions) == (0, 0)  # the 6,000 rows stored before the bad line were rolled back


def test_the_submit_page_refuses_a_bad_file_and_lists_no_job(client, sessions, summaries):
    data = as_file(summaries[:-1], "jsonl") + b'\n{"title": "no text"}\n'
    response = upload(client, data, "pypi.jsonl", path="/jobs", csrf_token=csrf_token(client))
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert f"line {N} of the JSONL file has no string field" in page
    assert "pypi.jsonl" not in page  # the list of jobs under the form is empty
    assert stored(sessions) == (0, 0)


def test_the_document_cap_stops_reading_at_the_first_document_past_it(client, sessions, summaries):
    # A line that is no JSON after the cap: reading stopped at the cap, so the cap is the error, not that line.
    data = as_file(summaries + ["one too many"], "jsonl") + b"\nnot json\n"
    response = upload(client, data, "pypi.jsonl")
    assert response.status_code == 400
    assert response.get_json()["error"]["message"] == (
        f"a job may hold at most {N} documents, got more (stopped at document {N + 1})")
    assert stored(sessions) == (0, 0)


def test_too_few_documents_in_a_file_leave_nothing(client, sessions):
    response = upload(client, b"one\ntwo\n\n", "few.txt")
    assert response.status_code == 400
    assert response.get_json()["error"]["message"] == "a job needs at least 5 non-empty documents, got 2"
    assert stored(sessions) == (0, 0)


def test_a_json_body_past_its_cap_is_a_413_while_a_file_that_size_is_accepted(settings, make_app, summaries):
    client = make_app(settings.model_copy(update={"max_json_mb": 1})).test_client()
    texts = [f"{i}: " + " ".join(summaries) for i in range(5)]  # ~2 MiB
    response = client.post("/api/v1/jobs", json={"documents": texts})
    assert response.status_code == 413
    assert response.get_json()["error"]["message"] == (
        "the request is larger than 1 MiB, the most a JSON body may be; send a large corpus as a file upload "
        "(multipart/form-data)")
    data = as_file(texts, "txt")
    assert len(data) > 2**20
    assert upload(client, data, "big.txt").status_code == 202


def test_reading_in_chunks_of_any_size_gives_the_same_documents():
    """Line breaks, a BOM, NUL and multi-byte characters split between two chunks read as they do whole."""
    data = "\ufeffcafé,title\r\n\"a\r\nb\",T1\r\n\x00é💡\r\x00\nlast\r".encode()
    assert corpus.parse_file(data, "x.txt") == [("café,title", None), ('"a', None), ('b",T1', None), ("é💡", None),
                                                ("last", None)]
    assert corpus.parse_file(data, "x.csv", "café") == [("a\r\nb", "T1"), ("é💡", None), ("last", None)]
    for size in (1, 2, 3, 5):
        def lines():
            return corpus.read_lines(io.BytesIO(data), chunk_bytes=size)
        assert list(corpus.line_docs(lines())) == corpus.parse_file(data, "x.txt")
        assert list(corpus.csv_docs(lines(), "café")) == corpus.parse_file(data, "x.csv", "café")


def test_a_bad_byte_names_its_offset_in_the_file():
    for size in (1, 4, 1 << 20):
        with pytest.raises(corpus.CorpusError, match=r"bad byte at offset 8\)"):
            list(corpus.read_lines(io.BytesIO(b"\xef\xbb\xbfab\ncd\xff\n"), chunk_bytes=size))
        with pytest.raises(corpus.CorpusError, match=r"bad byte at offset 2\)"):  # cut off inside a character
            list(corpus.read_lines(io.BytesIO(b"ab\xe2\x82"), chunk_bytes=size))


def test_iter_documents_walks_a_job_in_keyed_batches(sessions):
    texts = [f"document {i}" for i in range(23)]
    job_id = make_job(sessions, texts)
    with sessions() as session:
        batches = list(jobs.iter_documents(session, job_id, batch=5))
        assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
        assert [t for b in batches for t in b] == texts == jobs.load_documents(session, job_id)
        assert [t for b in jobs.iter_documents(session, job_id, 7, 17, batch=4) for t in b] == texts[7:17]
        assert list(jobs.iter_documents(session, job_id, 23)) == []
        assert list(jobs.iter_documents(session, job_id, batch=23)) == [texts]


def test_the_documents_api_pages_by_after_and_gets_every_index_once(client, sessions):
    n = 1_003
    job_id = finish_job(sessions, make_job(sessions, [f"doc {i}" for i in range(n)]), n)
    with sessions() as session:
        topic, x = jobs.load_array(session, job_id, "topic"), jobs.load_array(session, job_id, "x")
    seen, after, pages = [], None, 0
    while True:
        query = {"limit": 100} | ({} if after is None else {"after": after})
        page = client.get(f"/api/v1/jobs/{job_id}/documents", query_string=query).get_json()
        assert page["total"] == n
        seen += page["documents"]
        pages += 1
        after = page["next"]
        if after is None:
            break
        assert after == page["documents"][-1]["index"]
    assert pages == 11
    assert [d["index"] for d in seen] == list(range(n))
    assert [d["topic"] for d in seen] == topic.tolist()
    assert np.allclose([d["x"] for d in seen], x)
    # offset still works, and reads the same page
    by_offset = client.get(f"/api/v1/jobs/{job_id}/documents", query_string={"offset": 500, "limit": 7}).get_json()
    by_after = client.get(f"/api/v1/jobs/{job_id}/documents", query_string={"after": 499, "limit": 7}).get_json()
    assert by_offset == by_after and by_after["next"] == 506
    past = client.get(f"/api/v1/jobs/{job_id}/documents", query_string={"after": n + 5}).get_json()
    assert past["documents"] == [] and past["next"] is None
    both = client.get(f"/api/v1/jobs/{job_id}/documents", query_string={"after": 1, "offset": 1})
    assert both.status_code == 400 and "not both" in both.get_json()["error"]["message"]


def test_array_slices_read_only_the_asked_part(sessions):
    job_id = finish_job(sessions, make_job(sessions), 30)
    with transaction(sessions) as session:
        whole = {name: jobs.load_array(session, job_id, name) for name in ("topic", "x")}
        parts = jobs.load_array_slices(session, job_id, ("topic", "x", "absent"), 4, 9)
        assert set(parts) == {"topic", "x"}
        for name, values in whole.items():
            assert parts[name].tolist() == values[4:9].tolist()
        assert jobs.load_array_slices(session, job_id, ("x",), 28, 99)["x"].tolist() == whole["x"][28:].tolist()
        assert len(jobs.load_array_slices(session, job_id, ("x",), 40, 50)["x"]) == 0
