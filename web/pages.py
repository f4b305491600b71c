"""HTML pages: the submit form, the job list, and a job's progress and results."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from pydantic import ValidationError

from shared import corpus, jobs, label_runs
from shared.prompts import MAIN_PROMPT
from shared.schemas import DEFAULT_OUTLIER_THRESHOLD, POOR_FAITHFULNESS, JobParams
from shared.storage import map_key, model_key
from web import auth, context, submit
from web.api import job_or_404, job_public, remove_job, start_relabel, topics_payload
from web.errors import validation_message

bp = Blueprint("pages", __name__)


@bp.get("/")
def index():
    return index_page(error=None)


def index_page(error: str | None):
    """The submit form above this user's newest jobs; ``error``: why the last submission was refused."""
    recent = jobs.list_jobs(context.db(), limit=50, owner_id=auth.visible_owner())
    return render_template("index.html", jobs=recent, params=JobParams(), error=error)


@bp.post("/jobs")
def create_job():
    try:
        params = submit.params_from_form(request.form)
        priority = submit.priority_from_form(request.form)
        upload = request.files.get("file")
        docs = submit.docs_from_form(request.form, upload)
        job = submit.submit(submit.name_from(request.form, upload), docs, params, priority)
    except (corpus.CorpusError, ValidationError) as exc:
        message = validation_message(exc) if isinstance(exc, ValidationError) else str(exc)
        return index_page(error=message), 400
    return redirect(url_for("pages.job_page", job_id=job.id), code=303)


@bp.get("/jobs/<job_id>")
def job_page(job_id: str):
    job = job_or_404(job_id)
    results = topics_payload(job_id) if job.status == "succeeded" else None
    runs = label_runs.runs_of(context.db(), job_id)
    themes = jobs.themes_of(context.db(), job_id) if results else []
    domains = jobs.domains_of(context.db(), job_id) if results else []
    store = context.store()
    artifacts = {"model": store.exists(model_key(job_id)), "map": store.exists(map_key(job_id, "png"))}
    return render_template(
        "job.html", job=job, public=job_public(job), results=results, themes=themes, domains=domains,
        runs=runs,
        default_prompt=MAIN_PROMPT, artifacts=artifacts, default_threshold=DEFAULT_OUTLIER_THRESHOLD,
        poor_faithfulness=POOR_FAITHFULNESS,
    )


@bp.post("/jobs/<job_id>/labels")
def relabel(job_id: str):
    prompt = request.form.get("prompt", "").replace("\r\n", "\n")  # browsers send CRLF line ends
    if prompt.strip() == MAIN_PROMPT.strip():
        prompt = ""  # unchanged: the run records the default prompt as such
    start_relabel(job_id, prompt)
    return redirect(url_for("pages.job_page", job_id=job_id), code=303)


@bp.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str):
    job_or_404(job_id)
    session = context.db()
    jobs.cancel(session, job_id)
    session.commit()
    return redirect(url_for("pages.job_page", job_id=job_id), code=303)


@bp.post("/jobs/<job_id>/delete")
def delete_job(job_id: str):
    remove_job(job_id)
    return redirect(url_for("pages.index"), code=303)
