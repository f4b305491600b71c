"""The OpenAPI 3.1 document of the JSON API, generated, at /api/v1/openapi.json.

Nothing in it is written by hand: the paths and their parameters come from the app's url_map (every rule under
/api/v1, and /healthz), the schemas from the pydantic models (``models_json_schema``), and what each operation
takes and answers from OPERATIONS, one entry per view, keyed by its endpoint name. A route without an entry is
left out of the document, and tests/test_openapi.py fails on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata
from typing import Annotated, Any

from flask import Blueprint, Flask, current_app, jsonify
from pydantic import BaseModel, Field, TypeAdapter
from pydantic.json_schema import models_json_schema
from werkzeug.routing import Rule
from werkzeug.routing.rules import parse_converter_args

from shared.schemas import (
    AssignCreate,
    AssignmentPublic,
    DocumentMove,
    DocumentMoved,
    DocumentsPublic,
    ErrorPublic,
    HealthPublic,
    JobCreate,
    JobPublic,
    JobsPublic,
    JobUpload,
    LabelRunPublic,
    LabelRunsPublic,
    MapDocumentPublic,
    MapPublic,
    ProvenanceExport,
    RelabelCreate,
    SearchIndicesPublic,
    SearchResultsPublic,
    ThemesPublic,
    TopicDocumentsPublic,
    TopicPublic,
    TopicRename,
    TopicsPublic,
    WorkersPublic,
)
from web.api import API, MAX_PAGE
from web.exports import FORMATS, MAP_TYPES
from web.merge import MergeCreate, MergePublic
from web.search import MAX_QUERY

bp = Blueprint("openapi", __name__)
REF = "#/components/schemas/{model}"
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")


class MergesPublic(BaseModel):
    """``GET /api/v1/jobs/{id}/merges``."""

    merges: list[MergePublic]  # newest first


@dataclass(frozen=True)
class Media:
    """A response body that is not JSON: its media type, or one per value of the path's ``any`` converter
    (``documents.<any(csv, jsonl, parquet):ext>``)."""

    types: str | dict[str, str]

    def of(self, variant: str | None) -> str:
        return self.types if isinstance(self.types, str) else self.types[variant]


@dataclass(frozen=True)
class Query:
    name: str
    type: Any  # an annotation: pydantic gives the parameter's schema
    description: str


@dataclass(frozen=True)
class Link:
    """A follow-up call whose parameters come from this one (OpenAPI runtime expressions): schemathesis's
    stateful tests chain them."""

    operation: str  # the endpoint name of the operation to call next
    parameters: dict[str, str]


Answer = type[BaseModel] | Media | None  # a JSON model, another media type, or no body


@dataclass(frozen=True)
class Operation:
    summary: str
    answers: dict[int, Answer]  # the success statuses
    errors: tuple[int, ...] = ()  # besides those every operation of its kind can answer (see ``_errors``)
    body: type[BaseModel] | None = None  # the JSON body
    form: type[BaseModel] | None = None  # a multipart form instead of the JSON body
    form_encoding: dict[str, Any] | None = None  # how its parts are sent (OpenAPI's Encoding objects)
    body_optional: bool = False
    query: tuple[Query, ...] = ()
    located: tuple[int, ...] = ()  # statuses that carry a Location header: where to poll the new resource
    links: tuple[Link, ...] = ()  # from its first success status
    public: bool = False  # answered without an API token also when TOPICQ_AUTH=token
    database: bool = True  # reads the job database, so a 503 when it does not answer


def _bounded(low: int, high: int) -> Any:
    return Annotated[int, Field(ge=low, le=high)]


OFFSET = Query("offset", _bounded(0, 10**9), "Skip this many.")
DOWNLOAD = Query("download", str, "Any value but blank, 0 or false: an attachment (Content-Disposition).")
SEARCH = Query("q", Annotated[str, Field(max_length=MAX_QUERY)], 'Words and "quoted phrases"; all must match.')
JOB_LINKS = (
    Link("api.get_job", {"job_id": "$response.body#/id"}),
    Link("api.cancel_job", {"job_id": "$response.body#/id"}),
    Link("api.delete_job", {"job_id": "$response.body#/id"}),
)
SUCCEEDED = (404, 409)  # an unknown job; a job that has not succeeded (yet)
UPLOAD_ENCODING = {
    "file": {
        "contentType": "text/plain, text/csv, application/x-ndjson",
        "headers": {"Content-Disposition": {
            "description": "The file's name says its format: it ends in .txt, .csv or .jsonl.",
            "schema": {"type": "string"}, "example": 'form-data; name="file"; filename="corpus.txt"',
        }},
    },
    "params": {"contentType": "application/json"},
}

OPERATIONS: dict[str, Operation] = {
    "api.create_job": Operation(
        "Submit a corpus as a new job", {202: JobPublic}, (400, 415, 429), body=JobCreate, form=JobUpload,
        form_encoding=UPLOAD_ENCODING, located=(202,), links=JOB_LINKS,
    ),
    "api.list_jobs": Operation(
        "The jobs, newest first", {200: JobsPublic}, (400,),
        query=(Query("limit", _bounded(1, 500), "Jobs a page (default 50)."), OFFSET),
    ),
    "api.get_job": Operation("A job: status, stage, progress, stages", {200: JobPublic}, (404,)),
    "api.cancel_job": Operation(
        "Cancel a queued or running job", {200: JobPublic}, (404, 409),
        links=(Link("api.delete_job", {"job_id": "$response.body#/id"}),),
    ),
    "api.delete_job": Operation(
        "Delete a finished job with its documents, results and artifacts", {204: None}, (404, 409),
        links=(Link("api.get_job", {"job_id": "$request.path.job_id"}),),
    ),
    "api.list_workers": Operation("The workers whose last report has not expired", {200: WorkersPublic}),
    "api.get_topics": Operation("A succeeded job's topics", {200: TopicsPublic}, SUCCEEDED, query=(DOWNLOAD,)),
    "api.get_topics_csv": Operation("The topics as CSV", {200: Media("text/csv")}, SUCCEEDED),
    "api.get_themes": Operation("The themes grouping the topics, and the domains grouping them", {200: ThemesPublic},
                                SUCCEEDED),
    "api.get_documents": Operation(
        "Each document's topic and map position, in submission order", {200: DocumentsPublic}, (400, *SUCCEEDED),
        query=(
            Query("after", _bounded(0, 10**9), "Start after this index: the `next` of the page before (not with "
                  "offset)."),
            Query("offset", _bounded(0, 10**9), "Skip this many (not with after)."),
            Query("limit", _bounded(1, MAX_PAGE), "Documents a page (default 1000)."),
        ),
    ),
    "api.relabel": Operation(
        "Label the topics again, with the default or a custom prompt", {202: LabelRunPublic}, (400, 404, 409, 429),
        body=RelabelCreate, body_optional=True, located=(202,),
        links=(Link("api.label_history", {"job_id": "$request.path.job_id"}),),
    ),
    "api.label_history": Operation("The job's re-label runs, newest first", {200: LabelRunsPublic}, (404,)),
    "topics.get_topic": Operation("A topic", {200: TopicPublic}, SUCCEEDED),
    "topics.rename_topic": Operation("Rename a topic (null or blank: back to the generated label)",
                                     {200: TopicPublic}, (400, *SUCCEEDED), body=TopicRename),
    "topics.topic_documents": Operation(
        "A page of a topic's documents (-1: the outliers)", {200: TopicDocumentsPublic}, (400, *SUCCEEDED),
        query=(OFFSET, Query("limit", _bounded(1, 1000), "Documents a page (default 50).")),
    ),
    "topics.move_document": Operation("Move a document to another topic (-1: an outlier)", {200: DocumentMoved},
                                      (400, *SUCCEEDED), body=DocumentMove),
    "merge.create_merge": Operation(
        "Merge two or more topics into one", {202: MergePublic}, (400, 404, 409, 429), body=MergeCreate,
        located=(202,),
        links=(Link("merge.get_merge", {"job_id": "$request.path.job_id", "merge_id": "$response.body#/id"}),),
    ),
    "merge.list_merges": Operation("The job's merges, newest first", {200: MergesPublic}, (404,)),
    "merge.get_merge": Operation("A merge", {200: MergePublic}, (404,)),
    "search.search_documents": Operation(
        "Full-text search over the job's documents, best first", {200: SearchResultsPublic}, (400, *SUCCEEDED),
        query=(SEARCH, OFFSET, Query("limit", _bounded(1, 200), "Results a page (default 20).")),
    ),
    "search.search_indices": Operation("Every matching document's index, ascending", {200: SearchIndicesPublic},
                                       (400, *SUCCEEDED), query=(SEARCH,)),
    "exports.documents_export": Operation(
        "Every document with its topic, label and map position, streamed",
        {200: Media({ext: media for ext, (media, _) in FORMATS.items()})}, SUCCEEDED,
    ),
    "exports.model_archive": Operation("The fitted BERTopic model (safetensors) as a zip",
                                       {200: Media("application/zip")}, SUCCEEDED),
    "exports.provenance_export": Operation(
        "The prompts and raw answers behind every topic and theme label, with the labeller", {200: ProvenanceExport},
        SUCCEEDED, query=(DOWNLOAD,)),
    "exports.map_image": Operation("The static map", {200: Media(MAP_TYPES), 304: None}, SUCCEEDED,
                                   query=(DOWNLOAD,)),
    "maps.map_metadata": Operation("The map's topics, themes and bounds", {200: MapPublic}, SUCCEEDED),
    "maps.map_points": Operation(
        "The map's points: little-endian float32 x[n], float32 y[n], int32 topic[n]",
        {200: Media("application/octet-stream"), 304: None}, SUCCEEDED,
    ),
    "maps.map_document": Operation("One document with its topic's label", {200: MapDocumentPublic}, SUCCEEDED),
    "assign.assign_documents": Operation(
        "Put new documents into the job's topics (202 with Location when no worker answered in time)",
        {200: AssignmentPublic, 202: AssignmentPublic}, (400, 404, 409, 429), body=AssignCreate, located=(200, 202),
        links=(Link("assign.get_assignment",
                    {"job_id": "$request.path.job_id", "assignment_id": "$response.body#/id"}),),
    ),
    "assign.get_assignment": Operation("An assignment (202 while queued or running)",
                                       {200: AssignmentPublic, 202: AssignmentPublic}, (404,), located=(200, 202)),
    "health.healthz": Operation("Whether the database and Redis answer, and the workers' states",
                                {200: HealthPublic, 503: HealthPublic}, public=True, database=False),
    "openapi.openapi_document": Operation("This document", {200: Media("application/json")}, public=True,
                                          database=False),
}

ERRORS = {
    400: "The request is malformed: a parameter, the body or the corpus",
    401: "No API token, or one not recognised (TOPICQ_AUTH=token)",
    403: "An unsafe request a browser sent from another site",
    404: "No such job (or another user's), or nothing of it by that id",
    409: "Not in this state: the job has not succeeded, or an edit of it is in progress",
    413: "The request is larger than TOPICQ_MAX_UPLOAD_MB (a JSON body: TOPICQ_MAX_JSON_MB)",
    415: "The body is neither JSON nor a multipart form",
    429: "Too many requests of this kind, or too many jobs queued: try again after Retry-After seconds",
    503: "The job database did not answer (or, for the workers, Redis)",
}
ANSWERS = {200: "OK", 202: "Accepted: queued", 204: "Done: nothing to return", 304: "Not modified since the ETag",
           503: "The database or Redis did not answer"}
_VARIABLE = re.compile(r"<(?:(?P<converter>\w+)(?:\((?P<args>.*?)\))?:)?(?P<name>\w+)>")


def document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``app``'s JSON API."""
    tokens = app.extensions["topicq"]["settings"].auth_mode == "token"
    refs, defs = models_json_schema(_models(), ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    shapes: dict[str, str] = {}
    for rule in described_rules(app):
        spec = OPERATIONS[rule.endpoint]
        for path, variant, parameters in _paths(rule):
            # OpenAPI forbids two paths that differ only in their parameters' names: routes must agree on them.
            other = shapes.setdefault(re.sub(r"\{\w+\}", "{}", path), path)
            if other != path:
                raise ValueError(f"{path} and {other} are one path to OpenAPI: give the parameters the same names")
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                operation_id = rule.endpoint if variant is None else f"{rule.endpoint}.{variant}"
                paths.setdefault(path, {})[method.lower()] = _operation(
                    spec, method, operation_id, variant, parameters, refs, tokens
                )
    components: dict[str, Any] = {
        "schemas": defs.get("$defs", {}),
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                       "description": "An API token from `topicq users add NAME`."}},
    }
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "topicq", "version": metadata.version("topicq"),
                 "description": "Topics of large text corpora, labelled by an LLM. Every error answers "
                                '`{"error": {"code", "message"}}`.'},
        "paths": dict(sorted(paths.items())),
        "components": components,
    }
    if tokens:
        spec["security"] = [{"bearer": []}]
    return spec


def described_rules(app: Flask) -> list[Rule]:
    """The API's rules that OPERATIONS describes, in the url_map's order."""
    return [rule for rule in api_rules(app) if rule.endpoint in OPERATIONS]


def api_rules(app: Flask) -> list[Rule]:
    """Every rule the document should describe: those under /api/v1, and /healthz."""
    return [rule for rule in app.url_map.iter_rules() if rule.rule.startswith(f"{API}/") or rule.rule == "/healthz"]


def _models() -> list[tuple[type[BaseModel], str]]:
    seen: dict[tuple[type[BaseModel], str], None] = {(ErrorPublic, "serialization"): None}
    for spec in OPERATIONS.values():
        for model in (spec.body, spec.form):
            if model is not None:
                seen[(model, "validation")] = None
        for answer in spec.answers.values():
            if isinstance(answer, type):
                seen[(answer, "serialization")] = None
    return list(seen)


def _paths(rule: Rule) -> list[tuple[str, str | None, list[dict[str, Any]]]]:
    """``(OpenAPI path, variant, path parameters)`` for a rule: one path per value of an ``any`` converter (each
    with its own media type), else one with variant None."""
    found = [(None, rule.rule, [])]
    for match in _VARIABLE.finditer(rule.rule):
        converter, name = match["converter"] or "default", match["name"]
        args, kwargs = parse_converter_args(match["args"]) if match["args"] else ((), {})
        if converter == "any":
            found = [(value, path.replace(match[0], value), params) for _, path, params in found for value in args]
            continue
        if converter == "int":
            schema = {"type": "integer"} if kwargs.get("signed") else {"type": "integer", "minimum": 0}
        elif converter in ("default", "string"):
            schema = {"type": "string", "minLength": 1}
        else:
            raise ValueError(f"{rule.rule}: no schema for the {converter!r} converter")
        parameter = {"name": name, "in": "path", "required": True, "schema": schema}
        found = [(variant, path.replace(match[0], "{" + name + "}"), [*params, parameter])
                 for variant, path, params in found]
    return [(path, variant, params) for variant, path, params in found]


def _operation(spec: Operation, method: str, operation_id: str, variant: str | None,
               parameters: list[dict[str, Any]], refs: dict, tokens: bool) -> dict[str, Any]:
    query = [{"name": q.name, "in": "query", "required": False, "description": q.description,
              "schema": TypeAdapter(q.type).json_schema(ref_template=REF)} for q in spec.query]
    responses: dict[str, Any] = {}
    for status, answer in spec.answers.items():
        responses[str(status)] = _success(spec, status, answer, variant, refs)
    for status in _errors(spec, method, tokens):
        responses[str(status)] = _error(status, refs)
    out: dict[str, Any] = {"operationId": operation_id, "summary": spec.summary,
                           "parameters": parameters + query, "responses": dict(sorted(responses.items()))}
    content = {}
    if spec.body is not None:
        content["application/json"] = {"schema": refs[(spec.body, "validation")]}
    if spec.form is not None:
        content["multipart/form-data"] = {"schema": refs[(spec.form, "validation")]}
        if spec.form_encoding:
            content["multipart/form-data"]["encoding"] = spec.form_encoding
    if content:
        out["requestBody"] = {"required": not spec.body_optional, "content": content}
    if spec.public and tokens:
        out["security"] = []
    return out


def _success(spec: Operation, status: int, answer: Answer, variant: str | None, refs: dict) -> dict[str, Any]:
    response: dict[str, Any] = {"description": ANSWERS[status]}
    if isinstance(answer, Media):
        response["content"] = {answer.of(variant): {}}
    elif answer is not None:
        response["content"] = {"application/json": {"schema": refs[(answer, "serialization")]}}
    if status in spec.located:
        response["headers"] = {"Location": {"description": "Where to poll it", "schema": {"type": "string"}}}
    if spec.links and status == min(spec.answers):
        response["links"] = {link.operation.replace(".", "_"): {"operationId": link.operation,
                                                                "parameters": link.parameters}
                             for link in spec.links}
    return response


def _errors(spec: Operation, method: str, tokens: bool) -> list[int]:
    statuses = set(spec.errors)
    if tokens and not spec.public:
        statuses.add(401)
    if method in UNSAFE:
        statuses.add(403)  # web/security.py: a browser's request from another site
    if spec.body is not None or spec.form is not None:
        statuses.update((400, 413))
    if spec.database:
        statuses.add(503)
    return sorted(statuses)


def _error(status: int, refs: dict) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ERRORS[status],
        "content": {"application/json": {"schema": refs[(ErrorPublic, "serialization")]}},
    }
    if status == 429:
        response["headers"] = {"Retry-After": {"description": "Seconds to wait", "required": True,
                                               "schema": {"type": "string", "pattern": r"^\d+$"}}}
    return response


@bp.get(f"{API}/openapi.json")
def openapi_document():
    return jsonify(document(current_app))
