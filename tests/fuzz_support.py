"""schemathesis against a running topicq web: the app served by werkzeug in a thread over SQLite and a real
Redis, seeded with succeeded jobs (no worker: nothing here needs one), fuzzed operation by operation from its
own /api/v1/openapi.json and then through the document's links. tests/test_fuzz.py runs it short;
``python -m bench.fuzz`` long.

Checks: no 5xx, statuses, content types, bodies and headers as the document declares; in the stateful part
also that a resource made is there and one deleted is gone. A failure is recorded (with a curl command that
reproduces it), never raised, so one run counts them all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import hypothesis.errors
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    ensure_resource_availability,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    use_after_free,
)
from schemathesis.errors import FailureGroup
from werkzeug.serving import WSGIRequestHandler, make_server

from shared.db import make_engine, make_session_factory, migrate
from shared.settings import Settings
from shared.storage import LocalArtifactStore, map_key
from tests.factories import make_finished_job
from web import create_app

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
STATEFUL_CHECKS = [*CHECKS, ensure_resource_availability, use_after_free]
CHAIN_BATCH = 25  # chains to a hypothesis run (see _fuzz_links)
UNLIMITED = "1000000/minute"  # the rate limits have their own tests; here they would only turn cases into 429s
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>'


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any) -> None:  # one line a request would drown everything else
        pass


@dataclass
class RunningApi:
    base_url: str
    settings: Settings
    sessions: Any  # sessionmaker of the app's database, for seeding
    job_id: str = ""  # a succeeded job that only GET requests get

    def succeeded_job(self) -> str:
        """A new succeeded job with results, a map and search index (``tests.factories``), and its static maps."""
        job_id = make_finished_job(self.sessions)
        store = LocalArtifactStore(self.settings.data_dir / "artifacts")
        store.put(map_key(job_id, "png"), PNG)
        store.put(map_key(job_id, "svg"), SVG)
        return job_id


@contextmanager
def running_api(data_dir: Path, redis_url: str) -> Iterator[RunningApi]:
    """The real web app (``create_app``) on a free loopback port, on a fresh SQLite database."""
    settings = Settings(
        data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'topicq.db'}", redis_url=redis_url,
        # Two documents make a job (the least allowed): generated submissions get through, chains go on from them.
        min_documents=2, assign_wait_seconds=0, rate_limit_submit=UNLIMITED, rate_limit_work=UNLIMITED,
        _env_file=None,
    )
    migrate(settings)
    app = create_app(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
    thread = threading.Thread(target=server.serve_forever, name="fuzzed-web", daemon=True)
    thread.start()
    engine = make_engine(settings)
    try:
        api = RunningApi(f"http://127.0.0.1:{server.server_port}", settings, make_session_factory(engine))
        api.job_id = api.succeeded_job()
        yield api
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
        engine.dispose()
        app.extensions["topicq"]["sessions"].kw["bind"].dispose()


@dataclass
class Report:
    operations: int = 0
    cases: int = 0  # requests sent, stateful steps included
    stateful_steps: int = 0
    interrupted_batches: int = 0  # batches of chains cut short because the server's state made them flaky
    failures: dict[tuple[str, str], str] = field(default_factory=dict)  # (operation, title) -> first reproduction
    seconds: float = 0.0

    def record(self, case, error: FailureGroup) -> None:
        for failure in error.exceptions:
            key = (case.operation.label, failure.title)
            if key not in self.failures:
                self.failures[key] = f"{failure.message}\n    {case.as_curl_command()}"

    def summary(self) -> str:
        lines = [f"{len(self.failures)} failures"] + [
            f"- {operation}: {title}\n    {detail}" for (operation, title), detail in sorted(self.failures.items())
        ]
        return "\n".join(lines)


def load_schema(api: RunningApi):
    return schemathesis.openapi.from_url(f"{api.base_url}/api/v1/openapi.json")


def fuzz(api: RunningApi, examples: int, seed: int | None = None, stateful_runs: int = 10,
         stateful_steps: int = 8, include: dict[str, str] | None = None) -> Report:
    """``examples`` cases per operation and generation mode (valid and invalid data) and per target (a random
    job id, and a seeded succeeded job), then ``stateful_runs`` chains of up to ``stateful_steps`` linked calls
    (none when 0). ``seed`` None: the same cases every run (derandomized). ``include``: only the operations
    that match (schemathesis's ``include``, e.g. ``{"method": "GET", "path": "/api/v1/jobs"}``)."""
    schema = load_schema(api)
    if include:
        schema = schema.include(**include)
    report = Report()
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        report.operations += 1
        for targets in _targets(api, operation):
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _fuzz_operation(operation, mode, targets, examples, seed, report)
    if stateful_runs:
        _fuzz_links(schema, stateful_runs, stateful_steps, seed, report)
    report.seconds = time.monotonic() - started
    return report


def _targets(api: RunningApi, operation) -> list[dict[str, Any]]:
    """Path parameters to fix: none (all generated: mostly unknown ids), then a succeeded job. An operation that
    changes a job gets a job of its own, so that its edits (a merge in progress, a deletion) leave the others'
    jobs as they were."""
    names = {parameter.name for parameter in operation.path_parameters}
    if "job_id" not in names:
        return [{}]
    return [{}, {"job_id": api.job_id if operation.method.upper() == "GET" else api.succeeded_job()}]


def _settings(examples: int, derandomize: bool) -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=examples, derandomize=derandomize, deadline=None, database=None,
        phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck), print_blob=False,
    )


def _fuzz_operation(operation, mode: GenerationMode, targets: dict, examples: int, seed: int | None,
                    report: Report) -> None:
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=targets or None)

    @_settings(examples, derandomize=seed is None)
    @hypothesis.given(case=strategy)
    def run(case) -> None:
        report.cases += 1
        try:
            case.call_and_validate(checks=CHECKS)
        except FailureGroup as error:
            report.record(case, error)

    if seed is not None:
        run = hypothesis.seed(seed)(run)
    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        # Nothing of it can be invalid (no parameters, no body, or all fixed): there are no negative cases.


def _fuzz_links(schema, runs: int, steps: int, seed: int | None, report: Report) -> None:
    """``runs`` chains, CHAIN_BATCH to a hypothesis run, each batch seeded on its own. The server's state lives on
    between chains, so hypothesis may find a chain it replays drawing differently (FlakyStrategyDefinition):
    that batch ends there, is counted, and the next one starts."""
    for batch, start in enumerate(range(0, runs, CHAIN_BATCH)):
        machine = _machine(schema, report)
        hypothesis.seed((seed or 0) + batch)(machine)  # hypothesis reads a state machine's seed from its class
        settings = _settings(min(CHAIN_BATCH, runs - start), derandomize=False)
        try:
            machine.run(settings=hypothesis.settings(settings, stateful_step_count=steps))
        except hypothesis.errors.FlakyStrategyDefinition:
            report.interrupted_batches += 1


def _machine(schema, report: Report):
    class Machine(schema.as_state_machine()):
        def after_call(self, response, case) -> None:
            super().after_call(response, case)
            report.cases += 1
            report.stateful_steps += 1

        def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:
            try:
                case.validate_response(response, checks=STATEFUL_CHECKS, transport_kwargs=kwargs or None,
                                       recorder=self.recorder)
            except FailureGroup as error:
                report.record(case, error)

    return Machine
