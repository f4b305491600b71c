"""schemathesis against the running web, long: the fuzzing of tests/test_fuzz.py with many more cases.

    python -m bench.fuzz                       # 200 examples per operation, mode and target; 100 linked chains
    python -m bench.fuzz --examples 1000 --seed 7

The app (create_app, served by werkzeug in a thread) runs on a fresh SQLite database and a private Redis, seeded
with succeeded jobs (tests/fuzz_support.py). Every operation of /api/v1/openapi.json gets ``--examples`` cases
with valid and with invalid data, once on generated (mostly unknown) ids and once on a succeeded job; then
``--chains`` chains of up to ``--steps`` calls follow the document's links (25 chains to a hypothesis run; a
run that the server's changed state makes flaky ends early and is counted). Checks: no 5xx; statuses, media
types, bodies and headers as documented; in chains, a resource made is there and one deleted is gone. Prints
the operations, cases, chain steps and each distinct failure with a curl command that reproduces it; exits 1
if there was one.
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import tempfile
from pathlib import Path

import hypothesis
import schemathesis

from cli.redis_server import start_redis
from tests.fuzz_support import fuzz, running_api


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200, help="cases per operation, mode and target")
    parser.add_argument("--chains", type=int, default=100, help="stateful runs along the links")
    parser.add_argument("--steps", type=int, default=10, help="most calls in a chain")
    parser.add_argument("--seed", type=int, default=None, help="default: a random one, printed")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    with tempfile.TemporaryDirectory(prefix="topicq-fuzz-") as tmp:
        redis = start_redis(Path(tmp) / "redis")
        try:
            with running_api(Path(tmp) / "data", redis.url) as api:
                report = fuzz(api, args.examples, seed, args.chains, args.steps)
        finally:
            redis.stop()
    print(f"schemathesis {schemathesis.__version__}, hypothesis {hypothesis.__version__}, "
          f"Python {platform.python_version()}, {platform.processor() or platform.machine()}")
    print(f"seed {seed}, {args.examples} examples per operation, mode and target; {args.chains} chains of up to "
          f"{args.steps} steps")
    print("| operations | cases | of which chain steps | chain batches cut short | failures | seconds | cases/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {report.operations} | {report.cases:,} | {report.stateful_steps:,} | {report.interrupted_batches} | "
          f"{len(report.failures)} | {report.seconds:.0f} | {report.cases / report.seconds:.0f} |")
    if report.failures:
        print(report.summary())
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
