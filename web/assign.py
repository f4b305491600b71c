"""New documents into a finished job's topics: ``POST /api/v1/jobs/<id>/assign`` and the job page's form.

The request is a row (``assignments``) committed before its id is queued; a worker with the embedding model
answers it. The API waits up to ``TOPICQ_ASSIGN_WAIT_SECONDS`` for the answer and otherwise answers 202 with
the address to poll, so a slow queue never holds a request for long and nothing accepted is lost.
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint, jsonify, redirect, render_template, request, url_for

from shared import assignments, jobs
from shared.models import Assignment
from shared.queue import enqueue_assign
from shared.schemas import AssignCreate, AssignedDocument, AssignmentPublic
from web import context
from web.api import API, json_object, succeeded_job_or_409
from web.errors import ApiError

log = logging.getLogger(__name__)
bp = Blueprint("assign", __name__)
POLL_SECONDS = 0.2


def start(job_id: str, texts: list[str]) -> Assignment:
    succeeded_job_or_409(job_id, "topics to assign documents to")
    limit = context.settings().assign_max_documents
    if not texts:
        raise ApiError(400, "invalid_request", "send at least one document")
    if len(texts) > limit:
        raise ApiError(400, "too_many_documents", f"at most {limit} documents a request, got {len(texts)}")
    session = context.db()
    assignment = assignments.create(session, job_id, texts)
    session.commit()  # commit first, then queue
    try:
        enqueue_assign(context.celery(), assignment.id)
    except Exception:
        log.exception("assignment %s is saved but could not be queued; the sweep will", assignment.id)
    return assignment


def wait(assignment_id: str, seconds: float) -> Assignment:
    session = context.db()
    deadline = time.monotonic() + seconds
    while True:
        session.expire_all()
        assignment = assignments.get(session, assignment_id)
        if assignment.status in ("succeeded", "failed") or time.monotonic() >= deadline:
            return assignment
        session.rollback()  # end the read transaction, so the next read sees the worker's commit
        time.sleep(POLL_SECONDS)


def public(assignment: Assignment) -> AssignmentPublic:
    answers = None
    if assignment.status == "succeeded":
        labels = {t.topic: t.shown_label for t in jobs.topics_of(context.db(), assignment.job_id)}
        answers = [AssignedDocument(topic=t, label=labels.get(t, ""), similarity=s)
                   for t, s in zip(assignment.topics, assignment.similarities)]
    return AssignmentPublic(id=assignment.id, job_id=assignment.job_id, status=assignment.status,
                            error=assignment.error, assignments=answers, created_at=assignment.created_at,
                            finished_at=assignment.finished_at)


def assignment_or_404(job_id: str, assignment_id: str) -> Assignment:
    assignment = assignments.get(context.db(), assignment_id) if "\x00" not in assignment_id else None
    if assignment is None or assignment.job_id != job_id:
        raise ApiError(404, "not_found", f"job {job_id} has no assignment {assignment_id}")
    return assignment


def _answer(assignment: Assignment):
    location = f"{API}/jobs/{assignment.job_id}/assign/{assignment.id}"
    done = assignment.status in ("succeeded", "failed")
    return jsonify(public(assignment).model_dump(mode="json")), 200 if done else 202, {"Location": location}


@bp.post(f"{API}/jobs/<job_id>/assign")
def assign_documents(job_id: str):
    succeeded_job_or_409(job_id, "topics to assign documents to")
    payload = AssignCreate.model_validate(json_object())
    try:
        texts = payload.texts()
    except ValueError as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None
    assignment = start(job_id, texts)
    return _answer(wait(assignment.id, context.settings().assign_wait_seconds))


@bp.get(f"{API}/jobs/<job_id>/assign/<assignment_id>")
def get_assignment(job_id: str, assignment_id: str):
    return _answer(assignment_or_404(job_id, assignment_id))


@bp.post("/jobs/<job_id>/assign")
def assign_form(job_id: str):
    texts = [line.strip() for line in request.form.get("documents", "").splitlines() if line.strip()]
    assignment = start(job_id, texts)
    return redirect(url_for("assign.assignment_page", job_id=job_id, assignment_id=assignment.id), code=303)


@bp.get("/jobs/<job_id>/assign/<assignment_id>")
def assignment_page(job_id: str, assignment_id: str):
    job = succeeded_job_or_409(job_id, "assignments")
    assignment = assignment_or_404(job_id, assignment_id)
    if assignment.status in ("queued", "running"):
        assignment = wait(assignment_id, min(5.0, context.settings().assign_wait_seconds))
    return render_template("assign.html", job=job, assignment=assignment, answer=public(assignment), zip_documents=zip)
