"""One large job through the whole service, as a user runs it: `topicq up` (gunicorn, a worker per queue, SQLite,
a private Redis), a corpus file uploaded through the API, status polled until it ends.

    python -m bench.full_job                          # all 595,905 PyPI summaries
    python -m bench.full_job --n 50000                # a fixed random sample of them
    python -m bench.full_job --data-dir /tmp/full     # keep the data directory (and its embedding cache)

Prints what issue 13 asks of a 600k job on one machine: the time from upload to done and per stage, the peak
memory of everything the service runs (web, workers, Redis; SQLite lives in their processes) summed over its
process tree, the longest time the job's progress stood still while it ran (goal: under 30 s), and the status
request's latency throughout (goal: the web answers while the workers work).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import psutil
import requests

from bench.corpora import DATA
from cli.local_service import LocalService, free_port, service_env
from shared.schemas import FINISHED

CORPUS = DATA / "pypi_summaries.jsonl.gz"
GOAL_MEMORY_GIB = 12.0
GOAL_STILL_SECONDS = 30.0


def write_corpus(path: Path, n: int | None, seed: int = 0) -> int:
    """The corpus as a .jsonl file to upload (``text`` per line, the file's order); ``n``: a fixed sample."""
    with gzip.open(CORPUS, "rt", encoding="utf-8") as source:
        lines = source.readlines()
    if n is not None and n < len(lines):
        keep = sorted(random.Random(seed).sample(range(len(lines)), n))
        lines = [lines[i] for i in keep]
    with path.open("w", encoding="utf-8") as out:
        for line in lines:
            out.write(json.dumps({"text": json.loads(line)["text"]}) + "\n")
    return len(lines)


class TreeMemory(threading.Thread):
    """Samples the summed resident memory of a process and all its descendants once a second."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root, self.peak, self.peak_parts, self._stop = psutil.Process(pid), 0, {}, threading.Event()

    def sample(self) -> None:
        parts: dict[str, int] = {}
        for proc in [self.root, *self.root.children(recursive=True)]:
            try:
                name = " ".join(proc.cmdline()[1:4])[:60] or proc.name()
                parts[f"{proc.pid} {name}"] = proc.memory_info().rss
            except psutil.Error:
                continue
        total = sum(parts.values())
        if total > self.peak:
            self.peak, self.peak_parts = total, parts

    def run(self) -> None:
        while not self._stop.wait(1.0):
            self.sample()

    def stop(self) -> None:
        self._stop.set()


@contextmanager
def service(data_dir: Path | None):
    with tempfile.TemporaryDirectory() as tmp:
        root = data_dir or Path(tmp) / "var"
        root.mkdir(parents=True, exist_ok=True)
        svc = LocalService(service_env(root, free_port()), root / "up.log")
        try:
            yield svc
        finally:
            svc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=None, help="documents (a fixed random sample); default: all")
    parser.add_argument("--data-dir", type=Path, default=None, help="keep the service's data directory here")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="give up after this many seconds")
    args = parser.parse_args()
    cpu = "avx512_bf16" if "avx512_bf16" in Path("/proc/cpuinfo").read_text() else "avx2 only"
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {cpu}", flush=True)

    with tempfile.TemporaryDirectory() as tmp, service(args.data_dir) as svc:
        upload = Path(tmp) / "corpus.jsonl"
        n = write_corpus(upload, args.n)
        print(f"corpus: {n:,} documents, {upload.stat().st_size / 2**20:.1f} MiB as .jsonl", flush=True)
        memory = TreeMemory(svc.process.pid)
        memory.start()
        started = time.perf_counter()
        svc.wait_ready(timeout=600)
        print(f"service up and models loaded: {time.perf_counter() - started:.1f} s", flush=True)

        submitted = time.perf_counter()
        with upload.open("rb") as fh:
            answer = requests.post(f"{svc.base}/api/v1/jobs", files={"file": ("pypi.jsonl", fh, "application/jsonl")},
                                   data={"name": f"pypi {n}"}, timeout=3600)
        accepted = time.perf_counter() - submitted
        if answer.status_code != 202:
            raise SystemExit(f"submission refused: {answer.status_code} {answer.text[:300]}")
        job_id = answer.json()["id"]
        print(f"upload accepted in {accepted:.1f} s: job {job_id}", flush=True)

        latencies, last_change, still, last_seen, job = [], time.perf_counter(), 0.0, None, {}
        deadline = submitted + args.timeout
        while time.perf_counter() < deadline:
            asked = time.perf_counter()
            job = requests.get(f"{svc.base}/api/v1/jobs/{job_id}", timeout=60).json()
            now = time.perf_counter()
            latencies.append(now - asked)
            seen = (job.get("stage"), job.get("progress"))
            if seen != last_seen:
                if job.get("status") == "running":
                    still = max(still, now - last_change)
                print(f"{now - submitted:8.1f} s  {job['status']:<9} {seen[0]:<13} {100 * (seen[1] or 0):5.1f} %  "
                      f"service {memory.peak / 2**30:.2f} GiB peak", flush=True)
                last_seen, last_change = seen, now
            if job.get("status") in FINISHED:
                break
            time.sleep(2.0)
        total = time.perf_counter() - submitted
        memory.sample()
        memory.stop()

    print()
    print(f"job {job.get('status')} in {total:.0f} s ({total / 60:.1f} min) from upload; upload {accepted:.1f} s")
    for stage in job.get("stages", []):
        print(f"  {stage['stage']:<8} {stage['seconds']:9.1f} s  ({stage['chunks_done']}/{stage['chunks']} items)")
    print(f"topics {job.get('n_topics')}, outliers {job.get('n_outliers')}")
    print(f"peak memory of the service's process tree: {memory.peak / 2**30:.2f} GiB (goal < {GOAL_MEMORY_GIB})")
    for name, rss in sorted(memory.peak_parts.items(), key=lambda kv: -kv[1])[:6]:
        print(f"    {rss / 2**30:6.2f} GiB  {name}")
    print(f"longest stretch without a progress change while running: {still:.1f} s (goal < {GOAL_STILL_SECONDS})")
    lat = sorted(latencies)
    print(f"status requests: {len(lat)}, median {1000 * lat[len(lat) // 2]:.0f} ms, "
          f"max {1000 * lat[-1]:.0f} ms")
    if job.get("error"):
        print(f"error: {job['error']}")


if __name__ == "__main__":
    main()
