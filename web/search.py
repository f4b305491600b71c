"""Full-text search across a finished job's documents: the JSON API, the map's highlight, and the page."""

from __future__ import annotations

from flask import Blueprint, jsonify, render_template, request
from markupsafe import Markup, escape

from shared import jobs, search
from web import context
from web.api import API, _int_arg, succeeded_job_or_409
from web.errors import ApiError

bp = Blueprint("search", __name__)
PAGE = 20
MAX_QUERY = 500  # characters


def _query() -> str:
    # Documents hold no NUL (dropped on submission); in a query it would break FTS5's and PostgreSQL's parsers.
    query = request.args.get("q", "").replace("\x00", "")
    if len(query) > MAX_QUERY:
        raise ApiError(400, "invalid_query", f"a search is at most {MAX_QUERY} characters, got {len(query)}")
    return query


def _page(job_id: str, query: str, limit: int, offset: int) -> dict:
    """One page of results, each with its topic and the topic's shown label."""
    session = context.db()
    try:
        found = search.search(session, job_id, query, limit, offset)
    except search.SearchError as exc:
        raise ApiError(400, "invalid_query", str(exc)) from None
    topic_of = jobs.load_array(session, job_id, "topic")
    labels = {t.topic: t.shown_label for t in jobs.topics_of(session, job_id)}
    results = []
    for hit in found.hits:
        topic = int(topic_of[hit.index])
        results.append({"index": hit.index, "title": hit.title, "snippet": hit.snippet, "topic": topic,
                        "label": labels.get(topic, "")})
    return {"results": results, "total": found.total}


@bp.get(f"{API}/jobs/<job_id>/search")
def search_documents(job_id: str):
    succeeded_job_or_409(job_id, "search results")
    page = _page(job_id, _query(), _int_arg("limit", PAGE, 1, 200), _int_arg("offset", 0, 0, 10**9))
    return jsonify(page)


@bp.get(f"{API}/jobs/<job_id>/search/indices")
def search_indices(job_id: str):
    """Every matching document's index, ascending: the map highlights them."""
    succeeded_job_or_409(job_id, "search results")
    try:
        indices, total = search.matching_indices(context.db(), job_id, _query())
    except search.SearchError as exc:
        raise ApiError(400, "invalid_query", str(exc)) from None
    return jsonify({"indices": indices, "total": total})


def highlighted(snippet: str) -> Markup:
    """A snippet with its matched words as <mark> elements; everything else escaped (documents are untrusted)."""
    return Markup("").join(
        Markup("<mark>%s</mark>") % part if matched else escape(part)
        for part, matched in search.marked_segments(snippet)
    )


@bp.get("/jobs/<job_id>/search")
def search_page(job_id: str):
    job = succeeded_job_or_409(job_id, "search results")
    query = _query().strip()
    offset = _int_arg("offset", 0, 0, 10**9)
    page, error = None, None
    if query:
        try:
            page = _page(job_id, query, PAGE, offset)
        except ApiError as exc:
            error = exc.message
    return render_template("search.html", job=job, query=query, page=page, error=error, offset=offset, size=PAGE,
                           highlighted=highlighted), 400 if error else 200
