"""schemathesis against the running web (tests/fuzz_support.py), short: every operation of
/api/v1/openapi.json with valid and invalid data, on unknown ids and on a succeeded job, then chains of calls
along the document's links. No 5xx, and every status, media type, body and header as documented.
``python -m bench.fuzz`` is the long run."""

from __future__ import annotations

import pytest

from tests.fuzz_support import fuzz, load_schema, running_api

EXAMPLES = 12  # per operation, generation mode and target: about 1,000 requests, 20 s
STATEFUL_RUNS, STATEFUL_STEPS = 12, 6


@pytest.fixture(scope="module")
def api(redis_server, tmp_path_factory):
    with running_api(tmp_path_factory.mktemp("fuzz"), redis_server.url) as running:
        yield running


def test_the_running_api_answers_as_its_document_says(api):
    report = fuzz(api, EXAMPLES, stateful_runs=STATEFUL_RUNS, stateful_steps=STATEFUL_STEPS)
    operations = sum(1 for _ in load_schema(api).get_all_operations())
    assert report.operations == operations >= 30
    assert report.stateful_steps > 0
    assert not report.failures, report.summary()


def test_a_server_error_is_caught(api, monkeypatch):
    """The run above can fail: a view that breaks is reported, with a curl command to reproduce it."""

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("shared.jobs.count_jobs", broken)
    report = fuzz(api, 2, stateful_runs=0, include={"method": "GET", "path": "/api/v1/jobs"})
    assert report.operations == 1
    assert {title for _, title in report.failures} >= {"Server error", "Undocumented status code"}
    assert all("curl -X GET" in detail for detail in report.failures.values())
