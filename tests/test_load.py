"""Load, shortened (the full run, 200 jobs with polling throughout and the latency goal: `python -m bench.load`):
20 small jobs from 20 concurrent clients against `topicq up` as `make run` starts it (gunicorn, a worker per
queue, SQLite), while status polling runs at 200 requests a second for about 10 s. Every submission is accepted,
every job succeeds, none is duplicated, and every status request is answered. The latency is logged, not held
to the goal here (speed goals live in bench/), beyond a loose bound."""

from __future__ import annotations

import logging
import time

import pytest

from bench.load import LOAD_ENV, POLL_RATE, Poller, corpora, job_ids, problems, submit_all, wait_finished
from cli.local_service import LocalService, service_env
from cli.redis_server import free_port

pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)

JOBS = 20
POLL_SECONDS = 10


def test_twenty_clients_at_once_get_every_job_accepted_run_once_and_their_status_answered(tmp_path):
    service = LocalService({**service_env(tmp_path / "var", free_port()), **LOAD_ENV}, tmp_path / "up.log")
    try:
        service.wait_ready()
        before = set(job_ids(service.base))
        poller = Poller(service.base).start()
        first_accepted: list[float] = []  # the polling window opens with the first accepted job: nothing to poll before

        def accepted(job_id: str) -> None:
            first_accepted[:] = first_accepted or [time.monotonic()]
            poller.add(job_id)

        submissions = submit_all(service.base, corpora(JOBS), on_accepted=accepted)
        opened = first_accepted[0] if first_accepted else time.monotonic()
        time.sleep(max(0.0, POLL_SECONDS - (time.monotonic() - opened)))
        poller.stop()
        wait_finished(service.base, [s.job_id for s in submissions if s.job_id], 300)
        assert problems(service.base, submissions, before) == []
    finally:
        assert service.stop(), "processes of `topicq up` survived SIGTERM to its process group"
    polls = poller.summary()
    log.info("status polling while %d jobs ran: %s", JOBS, polls)
    assert polls["failed"] == 0
    assert polls["requests"] >= POLL_RATE * POLL_SECONDS / 2  # the polling did run at about its rate
    assert polls["p99_ms"] < 2000  # a sanity bound, not the goal (p99 < 100 ms: bench.load)
