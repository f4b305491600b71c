"""Accepting a corpus: parse it, store the job, then queue it (in that order, so nothing is lost).

An uploaded file is parsed as a stream (werkzeug has spooled it to a temporary file) and stored in batches while
it is read, inside the request's one transaction: a problem anywhere in it rolls back everything stored so far.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping

from werkzeug.datastructures import FileStorage, MultiDict

from shared import corpus, jobs
from shared.models import Job
from shared.queue import ring
from shared.schemas import FormOptions, JobCreate, JobParams
from web import auth, context
from web.errors import ApiError

log = logging.getLogger(__name__)

FORM_PARAMS = ("min_topic_size", "min_samples", "nr_topics", "generate_labels", "label_language",
               "max_outlier_share")


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


def docs_from_form(form: MultiDict, upload: FileStorage | None) -> Iterable[corpus.Doc]:
    """The documents of the form: the uploaded file's, read lazily from its stream as they are iterated, else
    the pasted text's."""
    if upload is not None and upload.filename:
        return corpus.read_file(upload.stream, upload.filename, form.get("text_column"), form.get("title_column"))
    pasted = corpus.without_nul(form.get("text", ""))
    if pasted.strip():
        return corpus.line_docs(corpus.split_lines([pasted]))
    raise corpus.CorpusError("no documents: paste text (one document per line) or upload a file")


def docs_from_json(body: JobCreate) -> list[corpus.Doc]:
    return corpus.from_json_items(body.documents)


def submit(name: str | None, docs: Iterable[corpus.Doc], params: JobParams, priority: int = 0) -> Job:
    """Store a job of ``docs`` (a list, or a stream read as it is stored) and ring for a worker. A CorpusError
    (too few or too many documents, a bad line of a file) leaves nothing stored: the transaction is rolled back.
    """
    settings = context.settings()
    name = corpus.without_nul(name) if name else name
    if isinstance(docs, list):  # known in full already: refuse before anything is stored
        corpus.check_size(docs, settings.min_documents, settings.max_documents)
    session = context.db()
    owner = auth.new_job_owner()
    if owner is not None and jobs.count_unfinished(session, owner) >= settings.max_queued_jobs:
        raise ApiError(429, "too_many_queued_jobs",
                       f"you have {settings.max_queued_jobs} jobs queued or running, the most one user may have; "
                       "submit again when one has finished", headers={"Retry-After": "30"})
    try:
        job = jobs.create_job(session, name=name, documents=corpus.at_most(docs, settings.max_documents),
                              params=params.model_dump(mode="json"), priority=priority, owner_id=owner)
        corpus.check_count(job.n_documents, settings.min_documents)
    except BaseException:
        session.rollback()  # the rows of a half-read file: the page that shows the error must not see them
        raise
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
