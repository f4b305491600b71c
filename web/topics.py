"""A topic of a finished job: its page, its documents, and the edits a user makes (rename, move a document)."""

from __future__ import annotations

from flask import Blueprint, jsonify, redirect, render_template, request, url_for

from shared import edits, jobs
from shared.documents import documents_at
from shared.models import Topic
from shared.schemas import MAX_ID, POOR_FAITHFULNESS, DocumentMove, TopicRename
from web import context
from web.api import API, _int_arg, json_object, succeeded_job_or_409, topic_public
from web.errors import ApiError
from web.merge import refuse_while_merging

bp = Blueprint("topics", __name__)
PAGE = 50  # documents per page of a topic's list


def topic_or_404(job_id: str, topic: int) -> Topic:
    # Beyond MAX_ID no topic can exist (and SQLite cannot even look for one past 64 bits).
    row = context.db().get(Topic, (job_id, topic)) if -1 <= topic <= MAX_ID else None
    if row is None:
        raise ApiError(404, "not_found", f"job {job_id} has no topic {topic}")
    return row


def _edit(fn, *args):
    """Run an edit and commit it; an ``EditError`` becomes a 400 with its one-line reason. Refused (409) while a
    merge of the job is queued or running: it would overwrite the edit."""
    refuse_while_merging(args[0])
    session = context.db()
    try:
        result = fn(session, *args)
    except edits.EditError as exc:
        session.rollback()
        status = {"not_found": 404, "not_ready": 409}.get(exc.code, 400)
        raise ApiError(status, exc.code if status != 400 else "invalid_edit", exc.message) from None
    session.commit()
    return result


def _documents_page(job_id: str, topic: int, limit: int, offset: int) -> tuple[list[dict], int]:
    indices, total = edits.documents_of_topic(context.db(), job_id, topic, limit, offset)
    rows = documents_at(context.db(), job_id, indices)
    return [{"index": i, "title": rows[i].title, "text": rows[i].text} for i in indices if i in rows], total


# -- the JSON API ------------------------------------------------------------------------------------------


@bp.get(f"{API}/jobs/<job_id>/topics/<int(signed=True):topic>")
def get_topic(job_id: str, topic: int):
    succeeded_job_or_409(job_id, "topics")
    row = topic_or_404(job_id, topic)
    texts = jobs.document_texts(context.db(), job_id, row.representative_docs)
    return jsonify(topic_public(row, texts).model_dump(mode="json"))


@bp.patch(f"{API}/jobs/<job_id>/topics/<int(signed=True):topic>")
def rename_topic(job_id: str, topic: int):
    succeeded_job_or_409(job_id, "topics")
    topic_or_404(job_id, topic)
    payload = TopicRename.model_validate(json_object())
    row = _edit(edits.rename_topic, job_id, topic, payload.label)
    texts = jobs.document_texts(context.db(), job_id, row.representative_docs)
    return jsonify(topic_public(row, texts).model_dump(mode="json"))


@bp.get(f"{API}/jobs/<job_id>/topics/<int(signed=True):topic>/documents")
def topic_documents(job_id: str, topic: int):
    succeeded_job_or_409(job_id, "topics")
    if topic != -1:
        topic_or_404(job_id, topic)
    documents, total = _documents_page(
        job_id, topic, _int_arg("limit", PAGE, 1, 1000), _int_arg("offset", 0, 0, 10**9)
    )
    return jsonify({"documents": documents, "total": total})


@bp.patch(f"{API}/jobs/<job_id>/documents/<int:index>")
def move_document(job_id: str, index: int):
    succeeded_job_or_409(job_id, "documents")
    payload = DocumentMove.model_validate(json_object())
    previous = _edit(edits.move_document, job_id, index, payload.topic)
    return jsonify({"index": index, "topic": payload.topic, "previous_topic": previous})


# -- pages -------------------------------------------------------------------------------------------------


@bp.get("/jobs/<job_id>/topics/<int(signed=True):topic>")
def topic_page(job_id: str, topic: int):
    job = succeeded_job_or_409(job_id, "topic pages")
    session = context.db()
    row = topic_or_404(job_id, topic)
    offset = _int_arg("offset", 0, 0, 10**9)
    documents, total = _documents_page(job_id, topic, PAGE, offset)
    texts = jobs.document_texts(session, job_id, row.representative_docs)
    others = jobs.topics_of(session, job_id)
    theme = next((t for t in jobs.themes_of(session, job_id) if t.theme == row.theme), None)
    domain = next((d for d in jobs.domains_of(session, job_id) if theme and d.domain == theme.domain), None)
    public = topic_public(row, texts)
    return render_template(
        "topic.html", job=job, topic=public, theme=theme, domain=domain, documents=documents, total=total, offset=offset,
        page=PAGE, topics=others, bars=list(zip(public.keywords, public.keyword_weights)),
        poor_faithfulness=POOR_FAITHFULNESS, provenance=row.provenance,
    )


@bp.post("/jobs/<job_id>/topics/<int(signed=True):topic>/label")
def rename_topic_form(job_id: str, topic: int):
    succeeded_job_or_409(job_id, "topics")
    topic_or_404(job_id, topic)
    label = None if "reset" in request.form else request.form.get("label", "")
    _edit(edits.rename_topic, job_id, topic, label)
    return redirect(url_for("topics.topic_page", job_id=job_id, topic=topic), code=303)


@bp.post("/jobs/<job_id>/documents/<int:index>/topic")
def move_document_form(job_id: str, index: int):
    succeeded_job_or_409(job_id, "documents")
    try:
        target = int(request.form.get("topic", ""))
    except ValueError:
        raise ApiError(400, "invalid_edit", "choose the topic to move the document to") from None
    previous = _edit(edits.move_document, job_id, index, target)
    back = request.form.get("back_topic", "")
    topic = int(back) if back.lstrip("-").isdigit() else previous
    return redirect(url_for("topics.topic_page", job_id=job_id, topic=topic), code=303)
