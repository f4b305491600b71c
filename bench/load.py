"""Load: N small jobs from 20 concurrent clients while status polling runs at 200 requests a second, against
`topicq up` as `make run` starts it (gunicorn, a worker per queue, SQLite).

    python -m bench.load                        # 200 jobs, polling for the whole run
    python -m bench.load --jobs 20 --poll-seconds 10

Checks what must hold under load: every submission accepted (202), every job succeeded, none duplicated (the job
list holds exactly the N new jobs, each job's documents are exactly its corpus, each of its stages ran each of
its items once, no worker died under it). Prints the polling latency (p50/p95/p99), the jobs finished a minute,
and whether the goal (p99 under 100 ms) is met. tests/test_load.py runs a short version with the same parts.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import queue
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import requests

from bench.corpora import window
from cli.local_service import bench_service
from shared.schemas import FINISHED

GOAL_P99_MS = 100.0
CLIENTS = 20
POLL_RATE = 200.0
POLL_THREADS = 10
DOCUMENTS = 40  # a job's documents: Python-docs paragraphs, about 30 words each
STAGES = ["embed", "cluster", "save"]  # a job without LLM labels


# `topicq up`'s environment for the load: the defaults, but for the submission rate limit, which counts per
# client address and would otherwise refuse 20 clients on one machine past 20 submissions a minute.
LOAD_ENV = {"TOPICQ_RATE_LIMIT_SUBMIT": "100000/minute"}


def corpora(n_jobs: int, size: int = DOCUMENTS, offset: int = 0) -> list[list[str]]:
    """``n_jobs`` disjoint corpora of ``size`` paragraphs (stripped, as the service stores them), from paragraph
    ``offset`` of the corpus in its fixed shuffled order on."""
    texts = [t.strip() for t in window("python_docs", n_jobs * size, offset)]
    return [texts[i * size : (i + 1) * size] for i in range(n_jobs)]


@dataclass
class Submission:
    corpus: list[str]
    status: int | None = None  # HTTP status of the submission
    job_id: str | None = None
    seconds: float = 0.0
    error: str = ""


def submit_all(base: str, corpora: list[list[str]], clients: int = CLIENTS, on_accepted=lambda job_id: None
               ) -> list[Submission]:
    """Each of ``clients`` threads submits its share of the corpora one after another, on its own connection."""
    submissions = [Submission(corpus) for corpus in corpora]

    def client(mine: list[Submission]) -> None:
        with requests.Session() as http:
            for s in mine:
                started = time.perf_counter()
                try:
                    response = http.post(f"{base}/api/v1/jobs", timeout=120,
                                         json={"documents": s.corpus, "params": {"generate_labels": False}})
                    s.status = response.status_code
                    if response.status_code == 202:
                        s.job_id = response.json()["id"]
                        on_accepted(s.job_id)
                    else:
                        s.error = response.text[:300]
                except requests.RequestException as exc:
                    s.error = str(exc)
                s.seconds = time.perf_counter() - started

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, [submissions[i::clients] for i in range(clients)]))
    return submissions


@dataclass
class Poll:
    due_s: float  # when it was due, from the poller's start
    scheduled_ms: float  # from the time it was due to the answer (a request sent late counts its lateness)
    wire_ms: float  # from sending to the answer
    status: int | None  # HTTP status; None: no answer


class Poller:
    """GET /api/v1/jobs/<id> at ``rate`` requests a second in all, open loop: ``threads`` clients, each sending at
    its fixed times (at once when its previous answer came late), over the accepted jobs in turn. It runs in a
    process of its own, so that the submitting clients' threads never make it late."""

    def __init__(self, base: str, rate: float = POLL_RATE, threads: int = POLL_THREADS) -> None:
        context = multiprocessing.get_context("spawn")
        self._ids, self._results, self._stop = context.Queue(), context.Queue(), context.Event()
        self._ready = context.Event()
        self._process = context.Process(target=_poll, args=(base, rate, threads, self._ids, self._stop, self._results,
                                                            self._ready), daemon=True)
        self.polls: list[Poll] = []
        self.seconds = 0.0

    def start(self) -> Poller:
        """Starts the polling process and returns once its clients run (a spawned process takes seconds to import)."""
        self._process.start()
        if not self._ready.wait(120):
            raise RuntimeError("the poller's process did not start within 120 s")
        return self

    def add(self, job_id: str) -> None:
        self._ids.put(job_id)

    def stop(self) -> None:
        self._stop.set()
        rows, self.seconds = self._results.get(timeout=120)
        self._process.join(timeout=30)
        self.polls = [Poll(*row) for row in rows]

    def summary(self) -> dict:
        scheduled = np.array([p.scheduled_ms for p in self.polls])
        wire = np.array([p.wire_ms for p in self.polls])
        seconds = self.seconds
        percentiles = {}
        for name, values in (("", scheduled), ("wire_", wire)):
            for q in (50, 95, 99):
                percentiles[f"{name}p{q}_ms"] = round(float(np.percentile(values, q)), 1) if len(values) else None
        return percentiles | {
            "requests": len(self.polls),
            "rate": round(len(self.polls) / seconds, 1) if seconds else 0.0,
            "failed": sum(p.status != 200 for p in self.polls),
            "max_ms": round(float(scheduled.max()), 1) if len(scheduled) else None,
        }


def _poll(base: str, rate: float, threads: int, ids: multiprocessing.Queue, stop: threading.Event,
          results: multiprocessing.Queue, ready: threading.Event) -> None:
    """The poller's process: ``threads`` open-loop clients until ``stop``; then (polls, seconds from the first
    poll's due time to the end) into ``results``."""
    known: list[str] = []
    polls: list[tuple[float, float, float, int | None]] = []
    first_due: list[float] = []
    lock = threading.Lock()
    started = time.perf_counter()

    def client(index: int) -> None:
        interval = threads / rate
        due, turn = started + index / rate, index
        with requests.Session() as http:
            while not stop.wait(max(0.0, due - time.perf_counter())):
                with lock:
                    try:
                        while True:
                            known.append(ids.get_nowait())
                    except queue.Empty:
                        pass
                    job_id = known[turn % len(known)] if known else None
                    if job_id is not None and not first_due:
                        first_due.append(due)
                if job_id is not None:  # else nothing is accepted yet
                    turn += threads
                    sent = time.perf_counter()
                    try:
                        status = http.get(f"{base}/api/v1/jobs/{job_id}", timeout=30).status_code
                    except requests.RequestException:
                        status = None
                    answered = time.perf_counter()
                    with lock:
                        polls.append((due - started, (answered - due) * 1000, (answered - sent) * 1000, status))
                due += interval

    workers = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    ready.set()
    for worker in workers:
        worker.join()
    results.put((polls, time.perf_counter() - (first_due[0] if first_due else started)))


def wait_finished(base: str, job_ids: list[str], timeout: float) -> None:
    """Until every job is finished: one status request every 50 ms over the unfinished ones."""
    deadline = time.monotonic() + timeout
    unfinished = list(job_ids)
    with requests.Session() as http:
        while unfinished:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(unfinished)} of {len(job_ids)} jobs did not finish in {timeout:.0f} s")
            job_id = unfinished.pop(0)
            if http.get(f"{base}/api/v1/jobs/{job_id}", timeout=30).json()["status"] not in FINISHED:
                unfinished.append(job_id)
            time.sleep(0.05)


def job_ids(base: str) -> list[str]:
    """Every job the service lists (500 a page)."""
    ids: list[str] = []
    while True:
        page = requests.get(f"{base}/api/v1/jobs", params={"limit": 500, "offset": len(ids)}, timeout=120).json()
        ids += [job["id"] for job in page["jobs"]]
        if not page["jobs"] or len(ids) >= page["total"]:
            return ids


def problems(base: str, submissions: list[Submission], before: set[str]) -> list[str]:
    """What does not hold after the load (empty: everything does): accepted, finished, not duplicated."""
    found = []
    refused = [s for s in submissions if s.status != 202]
    if refused:
        found.append(f"{len(refused)} of {len(submissions)} submissions were not accepted, e.g. "
                     f"{refused[0].status}: {refused[0].error}")
    accepted = [s for s in submissions if s.status == 202]
    listed = [job_id for job_id in job_ids(base) if job_id not in before]
    if sorted(listed) != sorted(s.job_id for s in accepted):
        found.append(f"the job list holds {len(listed)} new jobs ({len(set(listed))} distinct) for "
                     f"{len(accepted)} accepted submissions")
    for s in accepted:
        job = requests.get(f"{base}/api/v1/jobs/{s.job_id}", timeout=30).json()
        if job["status"] != "succeeded":
            found.append(f"job {s.job_id} is {job['status']}: {job['error']}")
            continue
        stages = [(st["stage"], st["chunks"], st["chunks_done"]) for st in job["stages"]]
        if stages != [(stage, 1, 1) for stage in STAGES] or job["attempts"] != 0:
            found.append(f"job {s.job_id}: stages {stages}, attempts {job['attempts']} (each item once, no death)")
        export = requests.get(f"{base}/api/v1/jobs/{s.job_id}/documents.jsonl", timeout=60)
        texts = [row["text"] for row in sorted(map(json.loads, export.text.splitlines()), key=lambda r: r["index"])]
        if texts != s.corpus:
            found.append(f"job {s.job_id}: its {len(texts)} documents are not the {len(s.corpus)} it was sent")
    return found


def jobs_per_minute(base: str, job_ids: list[str]) -> float:
    """Jobs finished a minute, from the first one's creation to the last one's end (the database's clock)."""
    jobs = [requests.get(f"{base}/api/v1/jobs/{job_id}", timeout=30).json() for job_id in job_ids]
    first = min(datetime.fromisoformat(j["created_at"]) for j in jobs)
    last = max(datetime.fromisoformat(j["finished_at"]) for j in jobs if j["finished_at"])
    return round(60 * len(jobs) / max((last - first).total_seconds(), 1e-9), 1)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--documents", type=int, default=DOCUMENTS, help="documents per job")
    parser.add_argument("--rate", type=float, default=POLL_RATE, help="status requests a second")
    parser.add_argument("--poll-seconds", type=float, default=None, help="default: until every job is finished")
    args = parser.parse_args()
    work = corpora(args.jobs, args.documents)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a plain `kill` stops the service it started too

    with bench_service(LOAD_ENV) as service:
        # One job first: the CPU worker's first clustering compiles UMAP's numba code (tens of seconds).
        warm = submit_all(service.base, corpora(1, args.documents, offset=args.jobs * args.documents), 1)[0]
        wait_finished(service.base, [warm.job_id], 600)
        before = set(job_ids(service.base))
        poller = Poller(service.base, rate=args.rate).start()
        started = time.perf_counter()
        submissions = submit_all(service.base, work, args.clients, on_accepted=poller.add)
        submitted = time.perf_counter() - started
        accepted = [s.job_id for s in submissions if s.job_id]
        if args.poll_seconds is not None:
            time.sleep(max(0.0, args.poll_seconds - (time.perf_counter() - started)))
            poller.stop()
        wait_finished(service.base, accepted, 3600)
        if args.poll_seconds is None:
            poller.stop()
        found = problems(service.base, submissions, before)
        rate = jobs_per_minute(service.base, accepted) if accepted else 0.0

    polls = poller.summary()
    slowest = max(s.seconds for s in submissions)
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores")
    print(f"{args.jobs} jobs of {args.documents} documents from {args.clients} clients: "
          f"{sum(s.status == 202 for s in submissions)} accepted in {submitted:.1f} s "
          f"(slowest submission {slowest:.2f} s)")
    print(f"throughput: {rate} jobs/min (first created to last finished)")
    print(f"status polling: {polls['requests']} requests at {polls['rate']}/s, {polls['failed']} not 200; latency "
          f"p50 {polls['p50_ms']} ms, p95 {polls['p95_ms']} ms, p99 {polls['p99_ms']} ms, max {polls['max_ms']} ms "
          f"(from when each was due); on the wire p50 {polls['wire_p50_ms']}, p95 {polls['wire_p95_ms']}, "
          f"p99 {polls['wire_p99_ms']} ms")
    met = polls["p99_ms"] is not None and polls["p99_ms"] < GOAL_P99_MS
    print(f"goal p99 < {GOAL_P99_MS:.0f} ms: {'met' if met else 'NOT met'}")
    print("correctness: " + ("all accepted, all succeeded, none duplicated" if not found else "; ".join(found[:10])))
    if found:
        sys.exit(1)


if __name__ == "__main__":
    main()
