"""``topicq up``: one command that starts Redis (unless one is configured), migrates, then runs an accelerator
worker, a CPU worker and the web server until Ctrl-C or SIGTERM, and stops all of them.

A child that dies is started again (and the supervisor says so); the others keep running, so the web stays up
while a killed worker comes back, and the work it held resumes from its last finished chunk. The workers run at a
lower CPU priority than the web: on a machine they keep busy, a status request still answers in milliseconds
(bench/load.py measures it), and the workers lose nothing while the web is idle."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta

import click

from cli.redis_server import RedisServer, start_redis
from shared.db import make_engine, make_session_factory, migrate
from shared.queue import make_celery, redis_client, worker_states
from shared.settings import Settings
from shared.users import list_users
from shared.sweep import SweepReport, sweep
from worker.bundled_embedding import embedding_model_for

STOP_GRACE_SECONDS = 10
RESTARTS_PER_MINUTE = 5  # a child dying faster than this is broken (say, its models cannot load): stop
WORKER_NICENESS = 10  # added to the workers' nice value: the web's requests go first


def sweep_once(settings: Settings, stale_after: timedelta) -> SweepReport:
    """One sweep from outside the workers (``topicq recover``)."""
    engine = make_engine(settings)
    try:
        return sweep(make_session_factory(engine), make_celery(settings), redis_client(settings), stale_after)
    finally:
        engine.dispose()


@dataclass
class Child:
    name: str
    argv: list[str]
    niceness: int = 0  # added to the nice value it starts with
    process: subprocess.Popen | None = None
    deaths: list[float] = field(default_factory=list)  # monotonic times of unexpected exits


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis: RedisServer | None = None
        self.children: list[Child] = []
        self.env: dict[str, str] = {}
        self.stopping = False

    def _say_if_nobody_can_sign_in(self) -> None:
        if self.settings.auth_mode != "token":
            return
        engine = make_engine(self.settings)
        try:
            with make_session_factory(engine)() as session:
                nobody = not list_users(session)
        finally:
            engine.dispose()
        if nobody:
            click.echo(f"Accounts are on (the web listens on {self.settings.host}) and there are no users yet: "
                       "`topicq users add NAME --admin` prints a token to sign in with.")

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
        # One embedding model for every process started here (mpnet on CUDA where its parts are installed).
        env["TOPICQ_EMBEDDING_MODEL"] = embedding_model_for(self.settings)
        self.env = env
        migrate(self.settings)
        self._say_if_nobody_can_sign_in()
        me = [sys.executable, "-m", "cli.main"]
        # One worker per kind of work: while one job clusters on the CPU worker, the next embeds or is
        # labelled on the accelerator worker (both on the CPU on a machine without a GPU).
        self.children = [
            Child("gpu worker", [*me, "worker", "--queues", "gpu"], WORKER_NICENESS),
            Child("cpu worker", [*me, "worker", "--queues", "cpu"], WORKER_NICENESS),
            Child("web", [*me, "web"]),
        ]
        for child in self.children:
            self._spawn(child)

    def _spawn(self, child: Child) -> None:
        # os.nice in the child before it runs Python: every thread it starts (ONNX, numba, llama.cpp) inherits it.
        lower = (lambda: os.nice(child.niceness)) if child.niceness else None
        child.process = subprocess.Popen(child.argv, env=self.env, preexec_fn=lower)

    def watch(self) -> int:
        """Report readiness and restart children that die, until a signal; returns the exit code."""
        announced_web = False
        announced: set[str] = set()
        client = redis_client(self.settings)
        while not self.stopping:
            for child in self.children:
                code = child.process.poll()
                if code is None or self.stopping:  # Ctrl-C reaches the children too
                    continue
                now = time.monotonic()
                child.deaths = [t for t in child.deaths if now - t < 60] + [now]
                if len(child.deaths) > RESTARTS_PER_MINUTE:
                    click.echo(f"{child.name} exited {len(child.deaths)} times in a minute (code {code}); "
                               "stopping", err=True)
                    return 1
                click.echo(f"{child.name} {ended(code)}; starting it again (its work resumes)", err=True)
                self._spawn(child)
            if not announced_web and _answers(self.settings.base_url + "/healthz"):
                click.echo(f"topicq is up: {self.settings.base_url}  (Ctrl-C stops it)")
                announced_web = True
            try:
                for state in worker_states(client):
                    if state.get("ready") and state["hostname"] not in announced:
                        announced.add(state["hostname"])
                        queues = ", ".join(state.get("queues") or [])
                        click.echo(f"worker {state['hostname']} ({queues}): models loaded, ready")
            except Exception:
                pass
            time.sleep(0.5)
        return 0

    def stop(self, *_args) -> None:
        self.stopping = True

    def shutdown(self) -> None:
        running = [c for c in self.children if c.process is not None and c.process.poll() is None]
        for child in running:
            child.process.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in running:
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                # A worker in a long step: what it held was handed back when it got the signal.
                click.echo(f"{child.name} did not stop in {STOP_GRACE_SECONDS} s; killing it", err=True)
                child.process.kill()
                child.process.wait()
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


def ended(code: int) -> str:
    """How a child ended, in words: its exit code, and for a signal which one (SIGKILL is what the kernel's
    out-of-memory killer sends)."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    why = ": the kernel's out-of-memory killer, most likely" if -code == signal.SIGKILL else ""
    return f"exited with code {code} ({name}{why})"


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except Exception:
        return False
