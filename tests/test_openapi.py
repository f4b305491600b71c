"""The OpenAPI document at /api/v1/openapi.json: valid OpenAPI 3.1, generated from the pydantic schemas, in step
with the app's routes and with the README's API table, and with the bearer scheme when accounts are on."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema_rs
import pytest
import schemathesis
from flask import Flask

from shared import schemas
from web.openapi import OPERATIONS, REF, api_rules

README = Path(__file__).resolve().parents[1] / "README.md"
BINARY = {
    "/api/v1/jobs/{job_id}/topics.csv": "text/csv",
    "/api/v1/jobs/{job_id}/documents.csv": "text/csv",
    "/api/v1/jobs/{job_id}/documents.jsonl": "application/x-ndjson",
    "/api/v1/jobs/{job_id}/documents.parquet": "application/vnd.apache.parquet",
    "/api/v1/jobs/{job_id}/model.zip": "application/zip",
    "/api/v1/jobs/{job_id}/map.png": "image/png",
    "/api/v1/jobs/{job_id}/map.svg": "image/svg+xml",
    "/api/v1/jobs/{job_id}/map/points": "application/octet-stream",
}


@pytest.fixture
def database_url(tmp_path):
    """The document does not depend on the database: SQLite only."""
    return f"sqlite:///{tmp_path / 'topicq.db'}"


def served(client) -> dict:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


def operations(doc: dict):
    for path, methods in doc["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


def sample_url(path: str, operation: dict) -> str:
    """``path`` with each path parameter filled in with a value of its type."""
    return path.format(**{p["name"]: "7" if p["schema"]["type"] == "integer" else "abc"
                          for p in operation["parameters"] if p["in"] == "path"})


def undescribed(app: Flask, doc: dict) -> tuple[set, set]:
    """``(routes the document lacks, operations no route answers)``, as (method, endpoint) and (method, path)
    pairs. Each documented path is filled in with values of its parameters' types and matched against the
    url_map, the way a request would be."""
    adapter = app.url_map.bind("localhost")
    matched, unmatched = set(), set()
    for method, path, operation in operations(doc):
        try:
            endpoint, _ = adapter.match(sample_url(path, operation), method=method)
        except Exception:
            unmatched.add((method, path))
            continue
        matched.add((method, endpoint))
    routes = {(method, rule.endpoint) for rule in api_rules(app) for method in rule.methods - {"HEAD", "OPTIONS"}}
    return routes - matched, unmatched


def test_the_document_is_valid_openapi_3_1(client):
    doc = served(client)
    assert doc["openapi"].startswith("3.1.")
    schemathesis.openapi.from_dict(doc).validate()  # against the OpenAPI 3.1 meta-schema
    broken = {**doc, "paths": {"/healthz": {"get": {"responses": "none"}}}}
    with pytest.raises(jsonschema_rs.ValidationError):  # the validator is not a no-op
        schemathesis.openapi.from_dict(broken).validate()


def test_every_api_route_is_described_and_nothing_else(app, client, settings, make_app):
    assert undescribed(app, served(client)) == (set(), set())
    assert set(OPERATIONS) == {rule.endpoint for rule in api_rules(app)}  # no entry for a route that is gone

    # A route added without describing it is caught.
    grown = make_app(settings)
    grown.add_url_rule("/api/v1/jobs/<job_id>/extra", "api.extra", lambda job_id: "", methods=["GET"])
    missing, _ = undescribed(grown, served(grown.test_client()))
    assert missing == {("GET", "api.extra")}


def test_schemas_are_the_pydantic_models(client):
    doc = served(client)
    components = doc["components"]["schemas"]
    for name in ("JobPublic", "TopicPublic", "ErrorPublic", "JobsPublic", "MapPublic", "WorkersPublic"):
        generated = getattr(schemas, name).model_json_schema(ref_template=REF, mode="serialization")
        for nested, schema in generated.pop("$defs", {}).items():
            assert components[nested] == schema
        assert components[name] == generated
    create = doc["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]
    assert create["application/json"]["schema"] == {"$ref": "#/components/schemas/JobCreate"}
    assert components["JobCreate"]["additionalProperties"] is False  # unknown fields are refused, as documented
    assert create["multipart/form-data"]["schema"] == {"$ref": "#/components/schemas/JobUpload"}
    assert components["JobUpload"]["properties"]["file"]["format"] == "binary"
    assert components["JobUpload"]["required"] == ["file"]


def test_responses_per_status_with_the_error_shape(client):
    doc = served(client)
    error = {"$ref": "#/components/schemas/ErrorPublic"}
    for method, path, operation in operations(doc):
        responses = operation["responses"]
        for status, response in responses.items():
            if int(status) >= 400 and path != "/healthz":  # its 503 is the health report, saying what is down
                assert response["content"]["application/json"]["schema"] == error, (method, path, status)
            if status == "429":
                assert response["headers"]["Retry-After"]["required"] is True
        if method in ("POST", "PATCH", "DELETE"):
            assert "403" in responses, (method, path)  # a browser's request from another site
        if "requestBody" in operation:
            assert {"400", "413"} <= set(responses), (method, path)
    jobs = doc["paths"]["/api/v1/jobs"]["post"]["responses"]
    assert set(jobs) == {"202", "400", "403", "413", "415", "429", "503"}
    assert "Location" in jobs["202"]["headers"]
    topic = doc["paths"]["/api/v1/jobs/{job_id}/topics/{topic}"]["get"]
    assert set(topic["responses"]) == {"200", "404", "409", "503"}
    assert topic["parameters"][1] == {"name": "topic", "in": "path", "required": True, "schema": {"type": "integer"}}
    limit = next(p for p in doc["paths"]["/api/v1/jobs"]["get"]["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 500)


def test_downloads_have_their_media_types(client):
    doc = served(client)
    for path, media in BINARY.items():
        assert list(doc["paths"][path]["get"]["responses"]["200"]["content"]) == [media], path


def test_links_chain_a_new_job_to_its_status(client):
    doc = served(client)
    links = doc["paths"]["/api/v1/jobs"]["post"]["responses"]["202"]["links"]
    assert links["api_get_job"] == {"operationId": "api.get_job", "parameters": {"job_id": "$response.body#/id"}}
    ids = {operation["operationId"] for _, _, operation in operations(doc)}
    for _, _, operation in operations(doc):
        for response in operation["responses"].values():
            assert {link["operationId"] for link in response.get("links", {}).values()} <= ids


def test_bearer_scheme_applies_with_accounts_on(settings, make_app, client):
    assert "security" not in served(client)  # TOPICQ_AUTH=none: nothing to send
    app = make_app(settings.model_copy(update={"auth": "token"}))
    tokens = app.test_client()
    doc = served(tokens)
    assert doc["security"] == [{"bearer": []}]
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "An API token from `topicq users add NAME`."
    }
    for method, path, operation in operations(doc):
        public = operation.get("security") == []
        assert public == (path in ("/healthz", "/api/v1/openapi.json")), path
        assert ("401" in operation["responses"]) != public, (method, path)
        # As the document says: without a token every operation but the public two is refused.
        answer = tokens.open(sample_url(path, operation), method=method)
        if public:
            assert answer.status_code in (200, 503), (method, path)
        else:
            assert answer.status_code == 401 and answer.get_json()["error"]["code"] == "unauthorized", (method, path)


def readme_operations() -> set[tuple[str, str]]:
    section = README.read_text().split("\n## JSON API\n", 1)[1].split("\n## ", 1)[0]
    pairs = set()
    for line in section.splitlines():
        row = re.match(r"\| (GET|POST|PATCH|PUT|DELETE) \| (.+?) \|", line)
        if row:
            pairs.update((row[1], path) for path in re.findall(r"`(/[^`?]*)`", row[2]))
    return pairs


def test_the_readme_lists_exactly_the_documented_operations(client):
    documented = {(method, path) for method, path, _ in operations(served(client))}
    assert readme_operations() == documented
