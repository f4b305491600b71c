"""Accepting a corpus: parse it, store the job, then queue it (in that order, so nothing is lost)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from werkzeug.datastructures import FileStorage, MultiDict

from shared import corpus, jobs
from shared.models import Job
from shared.queue import ring
from shared.schemas import FormOptions, JobCreate, JobParams
from web import auth, context
from web.errors import ApiError

log = logging.getLogger(__name__)

FORM_PARAMS = ("min_topic_size", "min_samples", "nr_topics", "generate_labels")


def params_from_form(form: MultiDict) -> JobParams:
    """Parameters from form fields (or a ``params`` JSON field); blank fields take the defaults."""
    if form.get("params"):
        try:
            raw = json.loads(form["params"])
        except (ValueError, RecursionError):
            raise corpus.CorpusError("the params field is not valid JSON") from None
        return JobParams.model_validate(raw)
    values: dict[str, object] = {}
    for key in FORM_PARAMS:
        given = form.getlist(key)
        if given and given[-1].strip() != "":  # the last wins: a checkbox after its hidden "false"
            values[key] = given[-1].strip()
    return JobParams.model_validate(values)


def priority_from_form(form: MultiDict) -> int:
    """The ``priority`` field (-10..10); blank or absent: 0."""
    given = (form.get("priority") or "").strip()
    return FormOptions.model_validate({"priority": given} if given else {}).priority


def docs_from_form(form: MultiDict, upload: FileStorage | None) -> list[corpus.Doc]:
    if upload is not None and upload.filename:
        return corpus.parse_file(
            upload.read(), upload.filename, form.get("text_column"), form.get("title_column")
        )
    pasted = corpus.without_nul(form.get("text", ""))
    if pasted.strip():
        return corpus.parse_lines(pasted)
    raise corpus.CorpusError("no documents: paste text (one document per line) or upload a file")


def docs_from_json(body: JobCreate) -> list[corpus.Doc]:
    return corpus.from_json_items(body.documents)


def submit(name: str | None, docs: list[corpus.Doc], params: JobParams, priority: int = 0) -> Job:
    settings = context.settings()
    name = corpus.without_nul(name) if name else name
    corpus.check_size(docs, settings.min_documents, settings.max_documents)
    session = context.db()
    owner = auth.new_job_owner()
    if owner is not None and jobs.count_unfinished(session, owner) >= settings.max_queued_jobs:
        raise ApiError(429, "too_many_queued_jobs",
                       f"you have {settings.max_queued_jobs} jobs queued or running, the most one user may have; "
                       "submit again when one has finished", headers={"Retry-After": "30"})
    job = jobs.create_job(session, name=name, documents=docs, params=params.model_dump(mode="json"),
                          priority=priority, owner_id=owner)
    session.commit()  # commit first, then ring: a worker never looks for work that is not there yet
    try:
        ring(context.celery(), "gpu")
    except Exception:
        # The job and its first work item are committed: a worker's sweep rings for it once Redis is back.
        log.warning("job %s is saved; Redis did not answer, so a worker's sweep will queue it", job.id)
    return job


def name_from(form: Mapping[str, str], upload: FileStorage | None) -> str | None:
    name = (form.get("name") or "").strip()
    if not name and upload is not None and upload.filename:
        name = upload.filename
    return name[:200] or None
