"""Properties of the upload parsers (shared/corpus.py), found with hypothesis: any bytes in give documents or a
CorpusError (a 4xx through the web), never another exception; a well-formed corpus comes out exactly as it went
in; and what the parser accepted is what the database stores and the API and exports hand back, and counts."""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from shared.corpus import FORMATS, CorpusError, from_json_items, parse_file
from shared.schemas import DocumentIn
from tests.factories import finish_job, make_finished_job

# Characters that parsers trip on: line and record separators of every kind, quotes, escapes, BOM, NUL.
TRICKY = ["\n", "\r", "\x00", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\ufeff",
          '"', ",", "\\", "{", "}", " ", "\t", "é", "💡"]
chars = st.one_of(st.characters(exclude_categories=["Cs"]), st.sampled_from(TRICKY))  # Cs: lone surrogates, below
texts = st.text(chars, max_size=40)
nonblank_texts = texts.filter(lambda t: t.replace("\x00", "").strip())
titles = st.none() | texts
corpora = st.lists(st.tuples(texts, titles), max_size=12)
splices = st.binary(max_size=8) | st.text(chars, max_size=8).map(str.encode)  # bytes, or text of structure


def expected(corpus: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    """What a submission of ``corpus`` must store: each document without NUL and surrounding whitespace, blank
    ones skipped, a blank title none."""
    out = []
    for text, title in corpus:
        text = text.replace("\x00", "").strip()
        if text:
            title = (title or "").replace("\x00", "").strip()
            out.append((text, title or None))
    return out


def encode(corpus: list[tuple[str, str | None]], kind: str, draw_style: st.DataObject) -> bytes:
    """``corpus`` as a file of ``kind``, written the ways real files are: CRLF or LF, with or without a BOM,
    JSON with or without ASCII escapes."""
    newline = draw_style.draw(st.sampled_from(["\n", "\r\n"]), label="newline")
    bom = "\ufeff" if draw_style.draw(st.booleans(), label="bom") else ""
    if kind == "txt":
        body = newline.join(text for text, _ in corpus)
    elif kind == "csv":
        out = io.StringIO(newline="")
        # A cell with a line break of any kind is quoted (RFC 4180); Python's writer quotes only the characters of
        # its own line terminator, so with "\n" it must quote every cell.
        quoting = csv.QUOTE_MINIMAL if newline == "\r\n" else csv.QUOTE_ALL
        writer = csv.writer(out, lineterminator=newline, quoting=quoting)
        writer.writerow(["title", "text"])
        writer.writerows([(title or "", text) for text, title in corpus])
        body = out.getvalue()
    else:
        ascii_only = draw_style.draw(st.booleans(), label="ensure_ascii")
        body = newline.join(json.dumps({"text": t} if title is None else {"text": t, "title": title},
                                       ensure_ascii=ascii_only) for t, title in corpus)
    return (bom + body).encode("utf-8")


def txt_safe(corpus: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    """A .txt file has one document a line and no titles: texts without line breaks."""
    return [(text.replace("\r", " ").replace("\n", " "), None) for text, _ in corpus]


def storable(docs) -> bool:
    return all(isinstance(t, str) and t == t.strip() and t and "\x00" not in t and t.encode("utf-8")
               and (title is None or (title.strip() == title and title and title.encode("utf-8")))
               for t, title in docs)


# -- the parsers alone: many examples, milliseconds each ---------------------------------------------------


@given(data=st.binary(max_size=300), kind=st.sampled_from(FORMATS), text_column=st.none() | texts)
@example(data=b"text\na\rb\n", kind="csv", text_column=None)  # a bare CR in an unquoted field
@example(data=b'{"text": "a", "n": ' + b"1" * 5000 + b"}", kind="jsonl", text_column=None)  # an int too long
@example(data=b'{"text": "\\ud800"}', kind="jsonl", text_column=None)  # a lone surrogate: not Unicode text
def test_any_bytes_give_documents_or_a_corpus_error(data, kind, text_column):
    try:
        docs = parse_file(data, f"corpus.{kind}", text_column)
    except CorpusError as exc:
        assert str(exc) and "\n" not in str(exc)  # one line, fit for the user
        return
    assert storable(docs)


@given(corpus=corpora, kind=st.sampled_from(FORMATS), style=st.data(), splice=splices,
       at=st.integers(min_value=0))
def test_damaged_files_give_documents_or_a_corpus_error(corpus, kind, style, splice, at):
    """A real file with a few bytes spliced in: near-valid input reaches deeper into each parser than noise."""
    data = encode(corpus, kind, style)
    at %= len(data) + 1
    try:
        docs = parse_file(data[:at] + splice + data[at:], f"corpus.{kind}")
    except CorpusError:
        return
    assert storable(docs)


@given(corpus=corpora, kind=st.sampled_from(FORMATS), style=st.data())
def test_a_well_formed_file_gives_back_exactly_its_documents(corpus, kind, style):
    if kind == "txt":
        corpus = txt_safe(corpus)
        assume(not corpus or not corpus[0][0].startswith("\ufeff"))  # a first BOM is the file's, not the text's
    assert parse_file(encode(corpus, kind, style), f"corpus.{kind}") == expected(corpus)


@given(corpus=st.lists(st.tuples(nonblank_texts, titles), max_size=5), at=st.integers(min_value=0),
       bad=st.sampled_from([("\ud800", None), ("\udfff", None), ("a\udc80b", None), ("a", "title \udbff")]))
def test_a_lone_surrogate_is_refused_not_stored(corpus, at, bad):
    """JSON can escape a lone surrogate (``"\\ud800"``), which is no Unicode text and no database can store."""
    corpus.insert(at % (len(corpus) + 1), bad)
    data = "\n".join(json.dumps({"text": t, "title": title}) for t, title in corpus).encode()
    with pytest.raises(CorpusError, match="surrogate"):
        parse_file(data, "corpus.jsonl")
    with pytest.raises(CorpusError, match="surrogate"):
        from_json_items([DocumentIn(text=t, title=title) for t, title in corpus])


# -- through the web into the database and back: a handful of examples, on SQLite and PostgreSQL ------------

WEB = settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=[
    HealthCheck.function_scoped_fixture,  # one app and database for all examples: each makes its own job
    HealthCheck.too_slow,
])
corpora_of_five = st.lists(st.tuples(nonblank_texts, titles), min_size=5, max_size=12)


@pytest.fixture
def client(settings, make_app):
    """The app without rate limits: these tests submit a job an example (tests/test_limits.py has the limits)."""
    unlimited = {"rate_limit_submit": "1000000/minute", "rate_limit_work": "1000000/minute"}
    return make_app(settings.model_copy(update=unlimited)).test_client()


def submit(client, data: bytes, kind: str):
    if kind == "json":
        return client.post("/api/v1/jobs", data=data, content_type="application/json")
    form = {"file": (io.BytesIO(data), f"corpus.{kind}"), "generate_labels": "false"}
    return client.post("/api/v1/jobs", data=form, content_type="multipart/form-data")


def stored(client, sessions, job_id: str, n: int) -> list[tuple[str, str | None]]:
    """The documents as the JSONL export hands them back, once the job has results."""
    finish_job(sessions, job_id, n)
    response = client.get(f"/api/v1/jobs/{job_id}/documents.jsonl")
    assert response.status_code == 200
    lines = response.data.decode().split("\n")  # not splitlines: U+2028 and the like are text inside a line
    return [(row["text"], row["title"]) for row in map(json.loads, lines[:-1])]


@WEB
@given(corpus=corpora_of_five, kind=st.sampled_from([*FORMATS, "json"]), style=st.data())
def test_accepted_documents_are_stored_exactly_and_counted(client, sessions, corpus, kind, style):
    if kind == "txt":
        corpus = txt_safe(corpus)
        assume(not corpus[0][0].startswith("\ufeff"))
    if kind == "json":
        documents = [t if title is None else {"text": t, "title": title} for t, title in corpus]
        data = json.dumps({"documents": documents, "params": {"generate_labels": False}}).encode()
    else:
        data = encode(corpus, kind, style)
    want = expected(corpus)
    assume(len(want) >= 5)
    response = submit(client, data, kind)
    assert response.status_code == 202, response.get_json()
    job = response.get_json()
    assert job["n_documents"] == len(want)
    assert client.get(f"/api/v1/jobs/{job['id']}").get_json()["n_documents"] == len(want)
    assert stored(client, sessions, job["id"], len(want)) == want


@WEB
@given(corpus=corpora_of_five, kind=st.sampled_from(FORMATS), style=st.data(), splice=splices,
       at=st.integers(min_value=0))
def test_any_upload_is_a_job_or_a_4xx_in_the_error_shape(client, sessions, corpus, kind, style, splice, at):
    data = encode(corpus, kind, style)
    at %= len(data) + 1
    data = data[:at] + splice + data[at:]
    response = submit(client, data, kind)
    if response.status_code == 202:
        docs = parse_file(data, f"corpus.{kind}")
        job = response.get_json()
        assert job["n_documents"] == len(docs)
        assert stored(client, sessions, job["id"], len(docs)) == docs
    else:
        assert 400 <= response.status_code < 500
        assert set(response.get_json()["error"]) == {"code", "message"}


@pytest.mark.parametrize("body", [
    {"name": "\ud800", "documents": ["a", "b", "c", "d", "e"]},
    {"documents": ["a", "b", "c", "d", {"text": "e", "title": "\udfff"}]},
    {"documents": ["a", "b", "c", "d", "e \udc80"]},
])
def test_a_lone_surrogate_anywhere_in_a_json_body_is_a_400(client, body):
    response = client.post("/api/v1/jobs", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 400 and "surrogate" in response.get_json()["error"]["message"]
    assert client.get("/api/v1/jobs").get_json()["total"] == 0


def test_a_lone_surrogate_in_a_new_label_is_a_400(client, sessions):
    job_id = make_finished_job(sessions)
    response = client.patch(f"/api/v1/jobs/{job_id}/topics/0", data=json.dumps({"label": "x \ud83d"}),
                            content_type="application/json")
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "invalid_json"
    assert client.get(f"/api/v1/jobs/{job_id}/topics/0").get_json()["label"] == "A label"
