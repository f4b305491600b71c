"""The JSON API under /api/v1 (/healthz lives in web/health.py)."""

from __future__ import annotations

import csv
import io
import json
import logging
import re

import redis
from flask import Blueprint, Response, jsonify, request
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import RequestEntityTooLarge

from shared import jobs, label_runs, merges, work
from shared.label_estimate import labelling_estimate
from shared.models import Job
from shared.prompts import validate_template
from shared.queue import enqueue_relabel, redis_client, worker_states
from shared.sanitize import spreadsheet_safe
from shared.schemas import (
    DocumentResult,
    DocumentsPublic,
    DomainPublic,
    JobCreate,
    JobPublic,
    LabellingPublic,
    LabelRunPublic,
    RelabelCreate,
    StagePublic,
    ThemePublic,
    ThemesPublic,
    TopicPublic,
    TopicsPublic,
    WorkerPublic,
    WorkersPublic,
)
from shared.storage import job_prefix
from web import auth, context, submit
from web.errors import ApiError

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__)
API = "/api/v1"
MAX_PAGE = 10_000
MIB = 1024 * 1024


def job_or_404(job_id: str):
    job = jobs.get_job(context.db(), job_id) if "\x00" not in job_id else None
    if job is None or not auth.may_see(job):  # another user's job does not exist for this one
        raise ApiError(404, "not_found", f"no job with id {job_id}")
    return job


def succeeded_job_or_409(job_id: str, what: str):
    """The job, if it has succeeded; else a 409 saying ``what`` exists only then (404 for an unknown id)."""
    job = job_or_404(job_id)
    if job.status != "succeeded":
        raise ApiError(409, "not_ready", f"job {job_id} is {job.status}; {what} exist once it has succeeded")
    return job


def job_public(job: Job) -> JobPublic:
    """A job as the API and its page show it: its row, its stages so far, and the worker on its running stage."""
    stages = work.stage_times(context.db(), job.id)
    # The running stage's worker is the one on its running item (``work.running_item``), without a second query.
    worker = next((s.worker for s in stages if s.status == "running"), None)
    estimate = labelling_estimate(context.db(), job, context.settings().label_chunk_topics)
    labelling = None if estimate is None else LabellingPublic.model_validate(estimate)
    return JobPublic.model_validate(job).model_copy(
        update={"worker": worker, "stages": [StagePublic.model_validate(s) for s in stages], "labelling": labelling}
    )


def job_json(job: Job) -> dict:
    return job_public(job).model_dump(mode="json")


def json_object() -> dict:
    """The request body as a JSON object, or a 400 (also for JSON nested too deeply to parse, and for a lone
    surrogate escape such as "\\ud800": JSON allows it, but it is no Unicode text and no database stores it).
    A body past TOPICQ_MAX_JSON_MB is a 413 before it is read: it would be held whole, several times over."""
    settings = context.settings()
    limit_mb = min(settings.max_json_mb, settings.max_upload_mb)
    too_large = ApiError(413, "request_entity_too_large", f"the request is larger than {limit_mb} MiB, the most a "
                         "JSON body may be; send a large corpus as a file upload (multipart/form-data)")
    if (request.content_length or 0) > limit_mb * MIB:
        raise too_large
    request.max_content_length = limit_mb * MIB  # a body without a Content-Length (chunked) stops there too
    try:
        data = request.get_data()
    except RequestEntityTooLarge:
        raise too_large from None
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the request body is not a JSON object")
    if SURROGATE_ESCAPE.search(data) and not _is_unicode(body):
        raise ApiError(400, "invalid_json", "the request body holds a lone surrogate escape (such as \\ud800), "
                       "which is not Unicode text")
    return body


SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # half of a pair, or alone: only then is a check needed


def _is_unicode(body: dict) -> bool:
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@bp.post(f"{API}/jobs")
def create_job():
    if request.mimetype == "application/json":
        payload = JobCreate.model_validate(json_object())
        job = submit.submit(payload.name, submit.docs_from_json(payload), payload.params, payload.priority)
    elif request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            raise ApiError(400, "missing_file", "multipart requests need a 'file' field")
        params = submit.params_from_form(request.form)
        priority = submit.priority_from_form(request.form)
        docs = submit.docs_from_form(request.form, upload)
        job = submit.submit(submit.name_from(request.form, upload), docs, params, priority)
    else:
        raise ApiError(415, "unsupported_media_type", "send application/json or multipart/form-data")
    return jsonify(job_json(job)), 202, {"Location": f"{API}/jobs/{job.id}"}


@bp.get(f"{API}/jobs")
def list_jobs():
    limit = _int_arg("limit", 50, 1, 500)
    offset = _int_arg("offset", 0, 0, 10**9)
    session = context.db()
    owner = auth.visible_owner()
    return jsonify(
        {"jobs": [job_json(j) for j in jobs.list_jobs(session, limit, offset, owner)],
         "total": jobs.count_jobs(session, owner)}
    )


@bp.get(f"{API}/jobs/<job_id>")
def get_job(job_id: str):
    return jsonify(job_json(job_or_404(job_id)))


@bp.post(f"{API}/jobs/<job_id>/cancel")
def cancel_job(job_id: str):
    session = context.db()
    job = job_or_404(job_id)
    cancelled = jobs.cancel(session, job_id)
    session.commit()
    if not cancelled:
        raise ApiError(409, "not_cancellable", f"job {job_id} is {job.status}; only queued or running jobs can be cancelled")
    session.refresh(job)
    return jsonify(job_json(job))


def remove_job(job_id: str) -> None:
    """Delete a finished job: its rows in one transaction, then its artifacts. 404 for an unknown job, 409 for
    one still queued or running."""
    session = context.db()
    job = job_or_404(job_id)
    status = job.status
    if not jobs.delete_job(session, job_id):
        raise ApiError(409, "not_finished", f"job {job_id} is {status}; cancel it first, then delete it")
    session.commit()
    # After the commit: a failure here leaves unreachable files, never a job whose artifacts are gone.
    context.store().delete_prefix(job_prefix(job_id))


@bp.delete(f"{API}/jobs/<job_id>")
def delete_job(job_id: str):
    remove_job(job_id)
    return "", 204


@bp.get(f"{API}/workers")
def list_workers():
    try:
        states = worker_states(redis_client(context.settings()))
    except redis.RedisError as exc:
        message = f"Redis did not answer ({type(exc).__name__}); the workers report their state there"
        raise ApiError(503, "redis_unavailable", message) from None
    workers = [WorkerPublic.model_validate(state) for state in states]
    for worker in workers:  # which job a worker is on is that job's owner's business
        if worker.job is not None and auth.visible_owner() is not None and not visible(worker.job):
            worker.job = worker.stage = None
    return jsonify(WorkersPublic(workers=workers).model_dump(mode="json"))


def visible(job_id: str) -> bool:
    job = jobs.get_job(context.db(), job_id)
    return job is not None and auth.may_see(job)


def topics_payload(job_id: str) -> TopicsPublic:
    session = context.db()
    job = succeeded_job_or_409(job_id, "topics")
    rows = jobs.topics_of(session, job_id)
    texts = jobs.document_texts(session, job_id, (i for row in rows for i in row.representative_docs))
    return TopicsPublic(topics=[topic_public(row, texts) for row in rows], n_outliers=job.n_outliers or 0)


def topic_public(row, texts: dict[int, str]) -> TopicPublic:
    """A topic row as the API shows it; ``texts`` holds at least its representative documents' texts."""
    return TopicPublic(
        topic=row.topic,
        size=row.size,
        label=row.shown_label,
        label_source=row.shown_source,
        generated_label=row.label,
        generated_label_source=row.label_source,
        keywords=row.keywords,
        keyword_weights=row.keyword_weights or [],
        representations=row.representations,
        representative_docs=[texts[i] for i in row.representative_docs],
        representative_doc_indices=row.representative_docs,
        theme=row.theme,
        faithfulness=row.faithfulness,
    )


@bp.get(f"{API}/jobs/<job_id>/topics")
def get_topics(job_id: str):
    payload = topics_payload(job_id).model_dump(mode="json")
    response = jsonify(payload)
    if request.args.get("download"):
        response.headers["Content-Disposition"] = f'attachment; filename="topics-{job_id}.json"'
    return response


@bp.get(f"{API}/jobs/<job_id>/topics.csv")
def get_topics_csv(job_id: str):
    payload = topics_payload(job_id)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["topic", "size", "label", "label_source", "keywords", "keybert", "mmr", "representative_docs",
                     "faithfulness"])
    for t in payload.topics:
        writer.writerow(
            [spreadsheet_safe(cell) for cell in [
                t.topic,
                t.size,
                t.label,
                t.label_source,
                ", ".join(t.keywords),
                ", ".join(t.representations.get("KeyBERT", [])),
                ", ".join(t.representations.get("MMR", [])),
                "\n---\n".join(t.representative_docs[:3]),
                "" if t.faithfulness is None else t.faithfulness,
            ]]
        )
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="topics-{job_id}.csv"'},
    )


@bp.get(f"{API}/jobs/<job_id>/themes")
def get_themes(job_id: str):
    succeeded_job_or_409(job_id, "themes")
    themes = [ThemePublic.model_validate(t) for t in jobs.themes_of(context.db(), job_id)]
    domains = [DomainPublic.model_validate(d) for d in jobs.domains_of(context.db(), job_id)]
    return jsonify(ThemesPublic(themes=themes, domains=domains).model_dump(mode="json"))


@bp.get(f"{API}/jobs/<job_id>/documents")
def get_documents(job_id: str):
    """A page of the documents' results in submission order: ``after`` (the last index of the page before, as its
    ``next`` says) or ``offset`` (kept for older clients) says where it starts. Either way only the page's part of
    each array is read, so the last page of a large job costs what the first does."""
    session = context.db()
    job = succeeded_job_or_409(job_id, "document results")
    if request.args.get("after") and request.args.get("offset"):
        raise ApiError(400, "invalid_parameter", "give after or offset, not both")
    if request.args.get("after"):
        start = _int_arg("after", 0, 0, 10**9) + 1
    else:
        start = _int_arg("offset", 0, 0, 10**9)
    limit = _int_arg("limit", 1000, 1, MAX_PAGE)
    stop = max(start, min(start + limit, job.n_documents))
    arrays = jobs.load_array_slices(session, job_id, ("topic", "topic_original", "x", "y"), start, stop)
    topic, x, y = arrays["topic"], arrays["x"], arrays["y"]
    original = arrays.get("topic_original", topic)  # a job finished before outlier reduction existed has none
    documents = [
        DocumentResult(index=start + i, topic=int(topic[i]), original_topic=int(original[i]), x=float(x[i]),
                       y=float(y[i]))
        for i in range(len(topic))
    ]
    following = stop - 1 if stop < job.n_documents else None
    return jsonify(DocumentsPublic(documents=documents, total=job.n_documents, next=following).model_dump(mode="json"))


def start_relabel(job_id: str, prompt: str | None):
    """Queue a labelling-only run over a succeeded job's topics; returns the committed run."""
    session = context.db()
    job = job_or_404(job_id)
    if job.status != "succeeded":
        raise ApiError(409, "not_ready", f"job {job_id} is {job.status}; only a succeeded job can be re-labelled")
    prompt = (prompt or "").strip() or None
    if prompt is not None and (problem := validate_template(prompt)):
        raise ApiError(400, "invalid_prompt", problem)
    in_progress = ApiError(409, "relabel_in_progress", f"job {job_id} is being re-labelled already")
    if label_runs.active_run(session, job_id) is not None:
        raise in_progress
    if merges.active_merge(session, job_id) is not None:  # its labels would go to the topics before the merge
        raise ApiError(409, "edit_in_progress", f"job {job_id} has a topic merge queued or running; try again after it")
    try:
        run = label_runs.create_run(session, job_id, prompt)
        session.commit()  # commit first, then queue
    except IntegrityError:
        # A simultaneous request's run came in between the check and the insert: the one-active-run index refused.
        session.rollback()
        if label_runs.active_run(session, job_id) is None:
            raise  # some other constraint (the job was deleted meanwhile, say)
        raise in_progress from None
    try:
        enqueue_relabel(context.celery(), run.id)
    except Exception:
        log.exception("re-label run %s is saved but could not be queued", run.id)
    return run


@bp.post(f"{API}/jobs/<job_id>/labels")
def relabel(job_id: str):
    payload = RelabelCreate.model_validate(json_object() if request.content_length else {})
    run = start_relabel(job_id, payload.prompt)
    return jsonify(run_json(run)), 202, {"Location": f"{API}/jobs/{job_id}/labels"}


@bp.get(f"{API}/jobs/<job_id>/labels")
def label_history(job_id: str):
    job_or_404(job_id)
    return jsonify({"runs": [run_json(r) for r in label_runs.runs_of(context.db(), job_id)]})


def run_json(run) -> dict:
    return LabelRunPublic.model_validate(run).model_dump(mode="json")


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_parameter", f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ApiError(400, "invalid_parameter", f"{name} must be between {low} and {high}, got {value}")
    return value
