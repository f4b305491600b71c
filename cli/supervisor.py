"""``topicq up``: one command that starts Redis (unless one is configured), migrates, re-queues unfinished
jobs, then runs a worker and the web server until Ctrl-C or SIGTERM, and stops all of them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import click

from cli.redis_server import RedisServer, start_redis
from shared import jobs, label_runs
from shared.db import make_engine, make_session_factory, migrate, transaction
from shared.queue import enqueue_job, enqueue_relabel, make_celery, redis_client, worker_states
from shared.settings import Settings

STOP_GRACE_SECONDS = 10


def recover_jobs(settings: Settings, stale_after: timedelta) -> int:
    """Re-queue jobs the queue may have lost (a restarted Redis, a killed worker); returns how many."""
    engine = make_engine(settings)
    with transaction(make_session_factory(engine)) as session:
        queued = jobs.requeue_stale(session, stale_after)
        runs = label_runs.requeue_stale_runs(session, stale_after)
    engine.dispose()
    app = make_celery(settings)
    for job_id in queued:
        enqueue_job(app, job_id)
    for run_id in runs:
        enqueue_relabel(app, run_id)
    return len(queued) + len(runs)


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis: RedisServer | None = None
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.stopping = False

    def start(self) -> None:
        data_dir = self.settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if not self.settings.redis_url:
            self.redis = start_redis(data_dir / "redis")
            env["TOPICQ_REDIS_URL"] = self.redis.url
            self.settings = self.settings.model_copy(update={"redis_url": self.redis.url})
            click.echo(f"redis: started on {self.redis.url}")
        env["TOPICQ_DATA_DIR"] = str(data_dir)
        migrate(self.settings)
        # With a Redis of our own no other worker can hold a job: every running one is an orphan.
        stale = timedelta(0) if self.redis is not None else self.settings.stale_job_after
        requeued = recover_jobs(self.settings, stale_after=stale)
        if requeued:
            click.echo(f"queue: re-queued {requeued} unfinished job(s)")
        me = [sys.executable, "-m", "cli.main"]
        self.children.append(("worker", subprocess.Popen([*me, "worker"], env=env)))
        self.children.append(("web", subprocess.Popen([*me, "web"], env=env)))

    def watch(self) -> int:
        """Report readiness, then wait until a signal or a child's death; returns the exit code."""
        announced_web = announced_worker = False
        client = redis_client(self.settings)
        while not self.stopping:
            for name, child in self.children:
                if child.poll() is not None and not self.stopping:  # Ctrl-C reaches the children too
                    click.echo(f"{name} exited with code {child.returncode}; stopping", err=True)
                    return 1
            if not announced_web and _answers(self.settings.base_url + "/healthz"):
                click.echo(f"topicq is up: {self.settings.base_url}  (Ctrl-C stops it)")
                announced_web = True
            if not announced_worker:
                try:
                    if any(w.get("ready") for w in worker_states(client)):
                        click.echo("worker: models loaded, ready for jobs")
                        announced_worker = True
                except Exception:
                    pass
            time.sleep(0.5)
        return 0

    def stop(self, *_args) -> None:
        self.stopping = True

    def shutdown(self) -> None:
        for _name, child in self.children:
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for name, child in self.children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                # A worker mid-job: the job goes back to the queue on the next start.
                click.echo(f"{name} did not stop in {STOP_GRACE_SECONDS} s; killing it", err=True)
                child.kill()
                child.wait()
        if self.redis is not None:
            self.redis.stop()


def run_up(settings: Settings) -> int:
    supervisor = Supervisor(settings)
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    try:
        supervisor.start()
        return supervisor.watch()
    finally:
        supervisor.shutdown()
        click.echo("topicq stopped")


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except Exception:
        return False
