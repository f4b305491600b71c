"""Run ``topicq up`` (or one of its parts, such as ``topicq web``) as a child process in its own process group
and talk to it: for the end-to-end tests and the benchmarks, which both want the service exactly as a user
starts it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import requests

from cli.redis_server import free_port

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


class LocalService:
    def __init__(self, env: dict[str, str], log: Path, command: Sequence[str] = ("up",)) -> None:
        self.log = log
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cli.main", *command],
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, as a terminal gives `make run`
            )
        self.base = f"http://127.0.0.1:{env['TOPICQ_PORT']}"

    def wait_until(self, predicate: Callable[[], T], timeout: float, what: str, every: float = 0.5) -> T:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"topicq exited early:\n{self.log_tail()}")
            try:
                value = predicate()
                if value:
                    return value
            except requests.ConnectionError:
                pass
            time.sleep(every)
        raise TimeoutError(f"timed out waiting for {what}:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def get(self, path: str, **kwargs):
        return requests.get(self.base + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs):
        return requests.post(self.base + path, timeout=120, **kwargs)

    def wait_ready(self, timeout: float = 300) -> None:
        self.wait_until(lambda: self.get("/healthz").json()["worker_ready"], timeout, "the workers to load their models")

    def stop(self, grace: float = 60) -> bool:
        """SIGTERM to the whole process group, as Ctrl-C in a terminal; True if nothing it started survived."""
        group = os.getpgid(self.process.pid)
        os.killpg(group, signal.SIGTERM)
        self.process.wait(timeout=grace)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.2)
        os.killpg(group, signal.SIGKILL)
        return False


def service_env(data_dir: Path, port: int, database_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOPICQ_")}
    env.update(TOPICQ_DATA_DIR=str(data_dir), TOPICQ_PORT=str(port), HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    if database_url:
        env["TOPICQ_DATABASE_URL"] = database_url
    return env


@contextmanager
def bench_service(extra_env: dict[str, str] | None = None, timeout: float = 300) -> Iterator[LocalService]:
    """`topicq up` for a benchmark: in a temporary data directory on a free port, waited for until its workers
    are ready (it says how long that took), stopped on the way out."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**service_env(Path(tmp) / "var", free_port()), **(extra_env or {})}
        service = LocalService(env, Path(tmp) / "up.log")
        try:
            started = time.perf_counter()
            service.wait_ready(timeout=timeout)
            print(f"service up and models loaded: {time.perf_counter() - started:.1f} s", flush=True)
            yield service
        finally:
            service.stop()
