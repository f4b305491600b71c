"""Downloads of a succeeded job: its documents with their topics (CSV, JSON lines, Parquet), streamed page by
page so memory stays flat however large the job, its BERTopic model archive, its static map, and the prompts and
answers behind its labels."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared import jobs
from shared.models import Document
from shared.sanitize import spreadsheet_safe
from shared.schemas import LabelProvenance, ProvenanceExport
from shared.storage import map_key, model_key
from web import context
from web.api import API, succeeded_job_or_409
from web.errors import ApiError

bp = Blueprint("exports", __name__)
PAGE_ROWS = 5_000  # documents read, encoded and sent at a time (one Parquet row group)
COLUMNS = ("index", "title", "text", "topic", "label", "label_source", "original_topic", "x", "y")
TEXT_COLUMNS = ("title", "text", "label", "label_source")
MAP_TYPES = {"png": "image/png", "svg": "image/svg+xml"}

Page = dict[str, list]  # column name -> that column's values for up to PAGE_ROWS documents, in order


@dataclass(frozen=True)
class DocumentTable:
    """What a document export needs besides the texts, read before the response starts (so that a 404 or 409 is
    still possible): per-document arrays, each of shape (n_documents,), and every topic's shown label."""

    job_id: str
    topic: np.ndarray  # int32, -1 for outliers
    original_topic: np.ndarray  # int32, the topic before outlier reduction
    x: np.ndarray  # float32, 2-D map coordinates
    y: np.ndarray
    labels: dict[int, tuple[str, str]]  # topic -> (shown label, shown source); outliers have none


def document_table(session: Session, job_id: str) -> DocumentTable:
    topic, original, x, y = (jobs.load_array(session, job_id, n) for n in ("topic", "topic_original", "x", "y"))
    labels = {t.topic: (t.shown_label, t.shown_source) for t in jobs.topics_of(session, job_id)}
    return DocumentTable(job_id, topic, topic if original is None else original, x, y, labels)


def document_pages(sessions: sessionmaker[Session], table: DocumentTable) -> Iterator[Page]:
    """The job's documents in submission order, PAGE_ROWS at a time (keyset on ``idx``).

    Each page has its own short session, so a slow or vanished client holds no database connection. Raises
    RuntimeError at the end if documents went missing meanwhile (the job was deleted): the client then sees a
    broken transfer, not a file that looks complete.
    """
    last, seen = -1, 0
    while True:
        with sessions() as session:
            rows = session.execute(
                select(Document.idx, Document.title, Document.text)
                .where(Document.job_id == table.job_id, Document.idx > last)
                .order_by(Document.idx)
                .limit(PAGE_ROWS)
            ).all()
        if not rows:
            break
        idx = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        topics = table.topic[idx].tolist()
        shown = [table.labels.get(t, ("", "")) for t in topics]
        yield {
            "index": idx.tolist(),
            "title": [row[1] for row in rows],
            "text": [row[2] for row in rows],
            "topic": topics,
            "label": [label for label, _ in shown],
            "label_source": [source for _, source in shown],
            "original_topic": table.original_topic[idx].tolist(),
            "x": table.x[idx].tolist(),
            "y": table.y[idx].tolist(),
        }
        last, seen = rows[-1][0], seen + len(rows)
    if seen != len(table.topic):
        raise RuntimeError(f"job {table.job_id}: exported {seen} of {len(table.topic)} documents; was it deleted?")


def csv_chunks(pages: Iterator[Page]) -> Iterator[bytes]:
    """A header, then one chunk per page; text a spreadsheet would run as a formula starts with ``'``."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for page in pages:
        for name in TEXT_COLUMNS:
            page[name] = [spreadsheet_safe(cell) for cell in page[name]]
        writer.writerows(zip(*(page[name] for name in COLUMNS)))
        yield _drain(out)
    if out.tell():  # no documents: the header alone
        yield _drain(out)


def _drain(out: io.StringIO) -> bytes:
    data = out.getvalue().encode()
    out.seek(0)
    out.truncate()
    return data


def jsonl_chunks(pages: Iterator[Page]) -> Iterator[bytes]:
    """One JSON object a line, one chunk per page."""
    for page in pages:
        rows = zip(*(page[name] for name in COLUMNS))
        yield "".join(json.dumps(dict(zip(COLUMNS, row)), ensure_ascii=False) + "\n" for row in rows).encode()


class _Sink(io.RawIOBase):
    """A write-only file that hands over what was written since the last ``take`` (ParquetWriter's sink); it
    reports the total written as its position, which the Parquet footer's offsets need."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        part = bytes(data)
        self._parts.append(part)
        self._position += len(part)
        return len(part)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def parquet_chunks(pages: Iterator[Page]) -> Iterator[bytes]:
    """One row group per page, sent as soon as it is written; the footer comes last."""
    import pyarrow as pa  # only a Parquet download pays for importing it
    import pyarrow.parquet as pq

    schema = pa.schema([
        ("index", pa.int32()), ("title", pa.string()), ("text", pa.string()), ("topic", pa.int32()),
        ("label", pa.string()), ("label_source", pa.string()), ("original_topic", pa.int32()),
        ("x", pa.float32()), ("y", pa.float32()),
    ])
    sink = _Sink()
    with pq.ParquetWriter(sink, schema) as writer:
        for page in pages:
            writer.write_table(pa.Table.from_pydict(page, schema=schema))
            yield sink.take()
    yield sink.take()


FORMATS = {
    "csv": ("text/csv", csv_chunks),
    "jsonl": ("application/x-ndjson", jsonl_chunks),
    "parquet": ("application/vnd.apache.parquet", parquet_chunks),
}


@bp.get(f"{API}/jobs/<job_id>/documents.<any(csv, jsonl, parquet):ext>")
def documents_export(job_id: str, ext: str):
    """Every document with its topic, label and map position: ``index, title, text, topic, label, label_source,
    original_topic, x, y`` (label and label_source empty for outliers), streamed."""
    succeeded_job_or_409(job_id, "document exports")
    table = document_table(context.db(), job_id)
    mimetype, encode = FORMATS[ext]
    pages = document_pages(current_app.extensions["topicq"]["sessions"], table)
    return Response(encode(pages), mimetype=mimetype, headers=_disposition("attachment", f"documents-{job_id}.{ext}"))


@bp.get(f"{API}/jobs/<job_id>/model.zip")
def model_archive(job_id: str):
    """The BERTopic model the worker saved, with the topics' current labels and documents' current topics."""
    session = context.db()
    job = succeeded_job_or_409(job_id, "model downloads")
    archive = context.store().get(model_key(job_id))
    if archive is None:
        reason = f"job {job_id} has no model archive; jobs run before model exports have none"
        raise ApiError(409, "not_available", reason)
    from shared.bertopic_archive import readme_text, with_edits

    labels = {t.topic: t.shown_label for t in jobs.topics_of(session, job_id)}
    doc_topics = jobs.load_array(session, job_id, "topic")
    readme = readme_text(job.name or job.id, context.settings().embedding_model)
    try:
        data = with_edits(archive, labels, None if doc_topics is None else doc_topics.tolist(), readme=readme)
    except ValueError as exc:  # an edit the model cannot express, e.g. an outlier in a model fitted without any
        raise ApiError(409, "not_available", f"the model cannot carry this job's edits: {exc}") from None
    return Response(data, mimetype="application/zip", headers=_disposition("attachment", f"model-{job_id}.zip"))


@bp.get(f"{API}/jobs/<job_id>/map.<any(png, svg):ext>")
def map_image(job_id: str, ext: str):
    """The static map; inline (for an ``<img>``) unless ``download=1``."""
    succeeded_job_or_409(job_id, "maps")
    data = context.store().get(map_key(job_id, ext))
    if data is None:
        reason = f"job {job_id} has no {ext.upper()} map; jobs run before static maps have none"
        raise ApiError(409, "not_available", reason)
    download = request.args.get("download", "") not in ("", "0", "false")
    headers = _disposition("attachment" if download else "inline", f"map-{job_id}.{ext}")
    headers["X-Content-Type-Options"] = "nosniff"
    if ext == "svg":  # opened on its own, an SVG is a document of this origin: let it run nothing
        headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    response = Response(data, mimetype=MAP_TYPES[ext], headers=headers)
    response.headers["Cache-Control"] = "no-cache"  # re-rendered after edits: revalidate, by its ETag
    response.add_etag()
    return response.make_conditional(request)


@bp.get(f"{API}/jobs/<job_id>/provenance")
def provenance_export(job_id: str):
    """Every generated topic, theme and domain label with the prompts sent, the raw answers received and the labeller
    (backend, model, settings) that gave them; an attachment with ``download=1``."""
    succeeded_job_or_409(job_id, "label provenance")
    session = context.db()
    export = ProvenanceExport(
        topics=[LabelProvenance(topic=t.topic, label=t.label, label_source=t.label_source, provenance=t.provenance)
                for t in jobs.topics_of(session, job_id)],
        themes=[LabelProvenance(theme=t.theme, label=t.label, label_source=t.label_source, provenance=t.provenance)
                for t in jobs.themes_of(session, job_id)],
        domains=[LabelProvenance(domain=d.domain, label=d.label, label_source=d.label_source, provenance=d.provenance)
                 for d in jobs.domains_of(session, job_id)],
    )
    response = jsonify(export.model_dump(mode="json", exclude_none=False))
    if request.args.get("download", "") not in ("", "0", "false"):
        response.headers.update(_disposition("attachment", f"provenance-{job_id}.json"))
    return response


def _disposition(kind: str, filename: str) -> dict[str, str]:
    return {"Content-Disposition": f'{kind}; filename="{filename}"'}
