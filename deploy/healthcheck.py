"""Health checks of docker-compose.yml's services: ``python deploy/healthcheck.py web|worker|sweeper``.

Exit 0 when healthy, 1 otherwise, with one line saying why (Docker keeps it in ``docker inspect``).

- ``web``: /healthz answers 200 (the database answers; Redis or the workers may still be away, which it reports).
- ``worker``: a worker on this host (its node name ends in ``@HOSTNAME``, as ``topicq worker`` names it) has
  published a ready record in Redis within the last three heartbeats: its models are loaded and it takes work.
- ``sweeper``: the sweeper's loop swept within the last ``--within`` seconds (it touches a file after each sweep).
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
import urllib.request
from pathlib import Path

SWEPT = Path("/tmp/topicq-swept")


def web() -> str | None:
    from shared.settings import get_settings

    port = get_settings().port
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=4) as answer:
            return None if answer.status == 200 else f"/healthz answered {answer.status}"
    except OSError as exc:  # URLError and HTTPError (a 503: the database is away) are OSErrors
        return f"/healthz: {exc}"


def worker(hostname: str) -> str | None:
    from shared.queue import redis_client, worker_states
    from shared.settings import get_settings

    try:
        mine = [w for w in worker_states(redis_client(get_settings()))
                if str(w.get("hostname", "")).partition("@")[2].split(".")[0] == hostname.split(".")[0]]
    except Exception as exc:  # redis.RedisError, or TOPICQ_REDIS_URL unset
        return f"Redis: {exc}"
    if not mine:
        return f"no worker on {hostname} has reported to Redis (starting, or dead)"
    if not any(w.get("ready") for w in mine):
        return f"the worker on {hostname} is not ready yet: {mine[0].get('status')}"
    return None


def sweeper(within: float, swept: Path = SWEPT) -> str | None:
    try:
        age = time.time() - swept.stat().st_mtime
    except FileNotFoundError:
        return "no sweep has succeeded yet"
    return None if age <= within else f"the last sweep succeeded {age:.0f} s ago"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["web", "worker", "sweeper"])
    parser.add_argument("--hostname", default=socket.gethostname(), help="worker: the host to look for.")
    parser.add_argument("--within", type=float, default=180.0, help="sweeper: seconds since the last sweep.")
    parser.add_argument("--swept", type=Path, default=SWEPT, help="sweeper: the file its loop touches.")
    args = parser.parse_args(argv)
    if args.role == "web":
        problem = web()
    elif args.role == "worker":
        problem = worker(args.hostname)
    else:
        problem = sweeper(args.within, args.swept)
    print(problem or "ok")
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main())
