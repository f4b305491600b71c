"""Merging topics of a finished job: ``POST /api/v1/jobs/<id>/merges``, its status, and the job page's form.

A merge is a row (``topic_merges``) committed before its id is queued; a worker with the embedding model and the
LLM runs it (representations fitted again, the merged topic labelled anew). While it is queued or running, the
job's topics are not edited otherwise: a second merge, a re-label run, a rename or a move answers 409.
"""

from __future__ import annotations

import logging
from typing import Literal

from flask import Blueprint, jsonify, redirect, request, url_for
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError
from sqlalchemy.exc import IntegrityError

from shared import jobs, label_runs, merges
from shared.merge_model import TopicMerge
from shared.queue import enqueue_merge
from shared.schemas import UtcDatetime
from web import context
from web.api import API, job_or_404, json_object
from web.errors import ApiError, validation_message

log = logging.getLogger(__name__)
bp = Blueprint("merge", __name__)


class MergeCreate(BaseModel):
    """Body of ``POST /api/v1/jobs/<id>/merges``."""

    model_config = ConfigDict(extra="forbid")

    topics: list[StrictInt] = Field(description="the ids of the topics to merge, at least two")


class MergePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    job_id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    topics: list[int]  # the ids merged, as they were before the merge
    result_topic: int | None  # the merged topic's id afterwards (every topic's id may change: largest first)
    error: str | None
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None


def refuse_while_merging(job_id: str) -> None:
    """409 ``edit_in_progress`` while a merge of the job is queued or running: an edit now would be overwritten."""
    if merges.active_merge(context.db(), job_id) is not None:
        raise ApiError(409, "edit_in_progress", f"job {job_id} has a topic merge queued or running; try again after it")


def edit_in_progress(job_id: str) -> ApiError | None:
    """The 409 a merge gets while the job's topics are being merged or re-labelled; None when they are not."""
    try:
        refuse_while_merging(job_id)
    except ApiError as busy:
        return busy
    if label_runs.active_run(context.db(), job_id) is not None:
        return ApiError(409, "edit_in_progress", f"job {job_id} is being re-labelled; try again after it")
    return None


def start(job_id: str, topics: list[int]) -> TopicMerge:
    """Check and queue a merge of ``topics``; returns the committed row."""
    session = context.db()
    job = job_or_404(job_id)
    if job.status != "succeeded":
        raise ApiError(409, "not_ready", f"job {job_id} is {job.status}; only a succeeded job's topics can be merged")
    _check(job_id, topics)
    if (busy := edit_in_progress(job_id)) is not None:
        raise busy
    try:
        merge = merges.create(session, job_id, topics)
        session.commit()  # commit first, then queue
    except IntegrityError:
        # A simultaneous request's merge came in between the check and the insert: the one-active index refused.
        session.rollback()
        if (busy := edit_in_progress(job_id)) is None:
            raise  # some other constraint (the job was deleted meanwhile, say)
        raise busy from None
    try:
        enqueue_merge(context.celery(), merge.id)
    except Exception:
        log.exception("topic merge %s is saved but could not be queued; the sweep will", merge.id)
    return merge


def _check(job_id: str, topics: list[int]) -> None:
    if len(topics) < 2:
        raise ApiError(400, "invalid_merge", f"choose at least two topics to merge; got {len(topics)}")
    repeated = sorted({t for t in topics if topics.count(t) > 1})
    if repeated:
        raise ApiError(400, "invalid_merge", f"name each topic once; {', '.join(map(str, repeated))} came twice")
    unknown = sorted(set(topics) - {t.topic for t in jobs.topics_of(context.db(), job_id)})
    if unknown:
        raise ApiError(400, "invalid_merge", f"job {job_id} has no topic {', '.join(map(str, unknown))}")


def merge_or_404(job_id: str, merge_id: str) -> TopicMerge:
    merge = merges.get(context.db(), merge_id) if "\x00" not in merge_id else None
    if merge is None or merge.job_id != job_id:
        raise ApiError(404, "not_found", f"job {job_id} has no merge {merge_id}")
    return merge


def merge_json(merge: TopicMerge) -> dict:
    return MergePublic.model_validate(merge).model_dump(mode="json")


@bp.post(f"{API}/jobs/<job_id>/merges")
def create_merge(job_id: str):
    job_or_404(job_id)
    try:
        payload = MergeCreate.model_validate(json_object())
    except ValidationError as exc:
        raise ApiError(400, "invalid_merge", validation_message(exc)) from None
    merge = start(job_id, payload.topics)
    return jsonify(merge_json(merge)), 202, {"Location": f"{API}/jobs/{job_id}/merges/{merge.id}"}


@bp.get(f"{API}/jobs/<job_id>/merges")
def list_merges(job_id: str):
    job_or_404(job_id)
    return jsonify({"merges": [merge_json(m) for m in merges.merges_of(context.db(), job_id)]})


@bp.get(f"{API}/jobs/<job_id>/merges/<merge_id>")
def get_merge(job_id: str, merge_id: str):
    job_or_404(job_id)
    return jsonify(merge_json(merge_or_404(job_id, merge_id)))


@bp.post("/jobs/<job_id>/merge")
def merge_form(job_id: str):
    try:
        topics = [int(value) for value in request.form.getlist("topics")]
    except ValueError:
        raise ApiError(400, "invalid_merge", "the topics to merge are topic numbers") from None
    start(job_id, topics)
    return redirect(url_for("pages.job_page", job_id=job_id), code=303)


@bp.app_context_processor
def _merges_in_templates() -> dict:
    """For the job page: ``merges_of_job(job_id)``, the job's merges newest first (``_merge.html``), and
    ``merge_in_progress(job_id)`` (the page reloads itself while one is queued or running)."""
    return {
        "merges_of_job": lambda job_id: merges.merges_of(context.db(), job_id),
        "merge_in_progress": lambda job_id: merges.active_merge(context.db(), job_id) is not None,
    }
