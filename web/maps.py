"""The document map of a finished job: its metadata, its points as one binary array, one document at a time for
hover and click, and plotly.js served by the app itself (no CDN)."""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path

import numpy as np
from flask import Blueprint, Response, jsonify, request, send_file, url_for

from shared import jobs
from shared.models import Document, Topic
from web import context
from web.api import API, succeeded_job_or_409
from web.errors import ApiError

bp = Blueprint("maps", __name__)
ONE_YEAR = 365 * 24 * 3600
# plotly.js's strict bundle (no eval: it runs under the pages' CSP), committed with its licence: vendor/README.md
PLOTLY_JS = Path(__file__).resolve().parent / "static" / "vendor" / "plotly-strict.min.js"


def map_arrays(job_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A job's map as ``(x, y, topic)``: float32[n] UMAP coordinates and int32[n] topic ids (-1: outlier)."""
    session = context.db()
    x, y, topic = (jobs.load_array(session, job_id, name) for name in ("x", "y", "topic"))
    if x is None or y is None or topic is None:
        raise ApiError(409, "not_ready", f"job {job_id} has no map (its 2-D coordinates were not saved)")
    return x.astype(np.float32), y.astype(np.float32), topic.astype(np.int32)


def topic_centres(x: np.ndarray, y: np.ndarray, topic: np.ndarray) -> dict[int, tuple[float, float, int]]:
    """``topic id -> (median x, median y, documents)`` for every topic id in ``topic`` (int32[n]), outliers
    (-1) left out."""
    order = np.argsort(topic, kind="stable")
    ids, starts, counts = np.unique(topic[order], return_index=True, return_counts=True)
    centres = {}
    for topic_id, start, count in zip(ids.tolist(), starts.tolist(), counts.tolist()):
        if topic_id < 0:
            continue
        members = order[start : start + count]
        centres[topic_id] = (float(np.median(x[members])), float(np.median(y[members])), count)
    return centres


def points_etag(job_id: str, topic: np.ndarray) -> str:
    """Changes when any document moves to another topic (the coordinates of a job never change)."""
    return f"{job_id}-{hashlib.blake2b(topic.tobytes(), digest_size=8).hexdigest()}"


@bp.get(f"{API}/jobs/<job_id>/map")
def map_metadata(job_id: str):
    """Topics and themes with where their labels go, and the map's bounds; the points come from ``points``."""
    job = succeeded_job_or_409(job_id, "maps")
    x, y, topic = map_arrays(job_id)
    centres = topic_centres(x, y, topic)
    session = context.db()
    topics = []
    for row in jobs.topics_of(session, job_id):
        cx, cy, size = centres.get(row.topic, (None, None, 0))
        topics.append({"topic": row.topic, "label": row.shown_label, "label_source": row.shown_source,
                       "size": size, "x": cx, "y": cy, "theme": row.theme})
    themes = []
    for theme in jobs.themes_of(session, job_id):
        placed = [centres[t] for t in theme.topics if t in centres]
        weights = np.array([size for _, _, size in placed], dtype=np.float64)
        if weights.sum() > 0:
            tx = float(np.average([cx for cx, _, _ in placed], weights=weights))
            ty = float(np.average([cy for _, cy, _ in placed], weights=weights))
        else:
            tx = ty = None
        themes.append({"theme": theme.theme, "label": theme.label, "x": tx, "y": ty, "topics": theme.topics,
                       "size": theme.size})
    bounds = {axis: [float(v.min()), float(v.max())] if len(v) else [0.0, 0.0] for axis, v in (("x", x), ("y", y))}
    response = jsonify({"n": job.n_documents, "points": url_for("maps.map_points", job_id=job_id), "topics": topics,
                        "themes": themes, "bounds": bounds})
    response.headers["Cache-Control"] = "no-store"  # labels change (renames): fetched fresh on every page load
    return response


@bp.get(f"{API}/jobs/<job_id>/map/points")
def map_points(job_id: str):
    """Little-endian float32 x[n], float32 y[n], int32 topic[n]: 12 bytes a document. Browsers keep it and ask
    again with If-None-Match (304 while no document has moved)."""
    succeeded_job_or_409(job_id, "maps")
    x, y, topic = map_arrays(job_id)
    etag = points_etag(job_id, topic)
    if request.if_none_match.contains(etag):
        response = Response(status=304)
    else:
        body = b"".join(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes() for a in (x, y, topic))
        response = Response(body, mimetype="application/octet-stream")
    response.set_etag(etag)
    response.headers["Cache-Control"] = "private, no-cache"  # keep it, but revalidate: documents can move
    return response


@bp.get(f"{API}/jobs/<job_id>/documents/<int:index>")
def map_document(job_id: str, index: int):
    """One document for the map's hover and side panel: its title, full text, topic and topic label (None for an
    outlier)."""
    job = succeeded_job_or_409(job_id, "documents' results")
    session = context.db()
    row = session.get(Document, (job_id, index)) if index < job.n_documents else None
    if row is None:
        raise ApiError(404, "not_found", f"job {job_id} has no document {index} (it has {job.n_documents})")
    topic_id = int(jobs.load_array(session, job_id, "topic")[index])
    topic = session.get(Topic, (job_id, topic_id)) if topic_id >= 0 else None
    label = topic.shown_label if topic is not None else None
    return jsonify({"index": index, "title": row.title, "text": row.text, "topic": topic_id, "label": label})


@functools.cache
def plotly_version() -> str:
    """The bundle's version, from its header comment. It goes into the script's URL, so a newer bundle is
    fetched anew despite the year-long cache lifetime."""
    with PLOTLY_JS.open(encoding="utf-8") as handle:
        header = handle.read(200)
    return re.search(r"plotly\.js \(strict - minified\) v(\S+)", header).group(1)


@bp.get("/vendor/plotly.min.js")
def vendor_plotly():
    return send_file(PLOTLY_JS, mimetype="text/javascript", max_age=ONE_YEAR, conditional=True)


@bp.app_context_processor
def map_context() -> dict:
    return {"plotly_version": plotly_version}
