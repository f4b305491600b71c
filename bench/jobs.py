"""Jobs through the service against the recipe run as a script, and what a small job waits, on one machine:

  (a) JOBS jobs of N documents (JOBS windows of one corpus of ../shared/data, bench.corpora.window) submitted at
      once to `topicq up`: first submit to last job done, and each stage's seconds summed over the jobs;
  (b) the recipe as a plain script (bench/recipe.py) on the same windows, one fresh process after another, each
      importing and loading its models as a notebook user does: the total of the runs;
  (c) job 1's documents resubmitted with another min_topic_size: submit to done, against job 1's (its
      embeddings come from the cache);
  (d) a large job, then at once a small one: when each finishes (workers take the next chunk of work from the
      job that has waited longest, so the small one should not wait for the large one).

    python -m bench.jobs                                   # python_docs, 8 jobs of 2,000: hours on 2 cores
    python -m bench.jobs --recipe-runs 2                   # (b) from 2 runs, extrapolated to 8
    python -m bench.jobs --n 300 --jobs 1 --recipe-runs 1 --skip-service    # (b) alone, quickly

(b) runs first, before the service starts, so the two never share the CPU. The last lines are one per figure:
`ratio (b)/(a): X` (goal >= 3), `ratio (c)/(first run): X` (goal <= 0.3) and
`small job done after: X s (large job: Y s)`.
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bench.corpora import corpus_size, window
from bench.memory import cpu_description
from cli.local_service import bench_service
from shared.schemas import FINISHED, default_min_topic_size


@dataclass
class Tracked:
    """A job submitted by this bench; times are ``time.perf_counter()`` seconds."""

    name: str
    id: str
    submitted: float  # just before its POST
    finished: float | None = None  # when polling first saw it finished
    state: dict | None = None  # its final JSON

    @property
    def seconds(self) -> float:
        return self.finished - self.submitted

    @property
    def stages(self) -> list[dict]:
        return self.state.get("stages") or []

    @property
    def work(self) -> float:
        """Seconds its finished chunks took, summed over its stages (without the time it waited)."""
        return sum(s.get("seconds") or 0.0 for s in self.stages)

    def line(self) -> str:
        state = self.state
        error = f" ({state['error']})" if state.get("error") else ""
        return (f"{self.name}: {state['status']}{error} {self.seconds:.1f} s after its submit, "
                f"{state.get('n_topics')} topics; stages: {describe(self.stages)}")


def describe(stages: list[dict]) -> str:
    if not stages:
        return "(the job JSON has no stages)"
    return ", ".join(f"{s['stage']} {s.get('seconds') or 0:.1f} s ({s.get('chunks_done')}/{s.get('chunks')} chunks)"
                     for s in stages)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="python_docs", choices=["python_docs", "news_sections", "pypi_summaries"])
    parser.add_argument("--n", type=int, default=2000, help="documents a job (and a recipe run)")
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--skip-recipe", action="store_true", help="leave out (b)")
    parser.add_argument("--skip-service", action="store_true", help="leave out (a), (c) and (d)")
    parser.add_argument("--recipe-runs", type=int, default=0,
                        help="run (b) this many times and extrapolate its total to --jobs runs (0: all of them)")
    parser.add_argument("--rerun-min-topic-size", type=int, default=0,
                        help="(c)'s min_topic_size (0: sqrt(n)/2, the earlier default; a job's default is sqrt(n)/3)")
    parser.add_argument("--large", type=int, default=0, help="(d)'s large job, documents (0: 4 x --n)")
    parser.add_argument("--small", type=int, default=500, help="(d)'s small job, documents")
    parser.add_argument("--small-priority", type=int, default=None, help="send this `priority` with (d)'s small job")
    args = parser.parse_args()
    args.large = args.large or 4 * args.n
    args.recipe_runs = min(args.recipe_runs or args.jobs, args.jobs)
    return args


# (b) ---------------------------------------------------------------------------------------------------------

def run_recipe(args: argparse.Namespace) -> float:
    """The recipe's total over ``args.jobs`` runs in seconds: measured, or extrapolated from ``args.recipe_runs``."""
    started = time.perf_counter()
    prepared = subprocess.run([sys.executable, "-m", "bench.recipe", "--prepare"], capture_output=True, text=True)
    if prepared.returncode:
        raise SystemExit(f"preparing the recipe's LLM failed:\n{prepared.stderr[-3000:]}")
    print(f"(b) the recipe's LLM prepared for transformers (once, not counted): {time.perf_counter() - started:.1f} s",
          flush=True)
    walls = []
    for k in range(args.recipe_runs):
        command = [sys.executable, "-m", "bench.recipe", "--corpus", args.corpus, "--n", str(args.n),
                   "--offset", str(k * args.n)]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        walls.append(time.perf_counter() - started)
        if done.returncode:
            raise SystemExit(f"recipe run {k + 1} failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result["steps"].items())
        per_label = result["steps"]["LLM labels"] / max(result["topics"], 1)
        print(f"    run {k + 1} (window {k + 1}): {walls[-1]:.1f} s, {result['topics']} topics "
              f"(min_topic_size {result['min_topic_size']}, LLM {result['llm_dtype']}, {per_label:.1f} s a label); "
              f"{steps}\n        first labels: {result['labels']}", flush=True)
    measured = sum(walls)
    if args.recipe_runs == args.jobs:
        print(f"(b) {args.jobs} recipe run{'s' if args.jobs > 1 else ''} one after another: {measured:.1f} s in all")
        return measured
    total = measured / len(walls) * args.jobs
    print(f"(b) {args.jobs} recipe runs: {total:.1f} s in all, extrapolated from {len(walls)} measured "
          f"run{'s' if len(walls) > 1 else ''} ({measured:.1f} s)")
    return total


# (a), (c), (d) -----------------------------------------------------------------------------------------------

def submit(service, name: str, texts: list[str], params: dict | None = None, priority: int | None = None) -> Tracked:
    body: dict = {"name": name, "documents": texts, "params": params or {}}
    if priority is not None:
        body["priority"] = priority
    started = time.perf_counter()
    response = service.post("/api/v1/jobs", json=body)
    if response.status_code != 202:
        raise SystemExit(f"submitting {name}: HTTP {response.status_code} {response.text[:500]}")
    return Tracked(name, response.json()["id"], started)


def follow(service, jobs: list[Tracked], timeout: float) -> None:
    """Poll every second until all ``jobs`` have finished, setting each one's ``finished`` and ``state``."""

    def all_finished() -> bool:
        for job in jobs:
            if job.finished is None:
                state = service.get(f"/api/v1/jobs/{job.id}").json()
                if state["status"] in FINISHED:
                    job.finished, job.state = time.perf_counter(), state
        return all(job.finished is not None for job in jobs)

    service.wait_until(all_finished, timeout, f"{len(jobs)} job(s) to finish", every=1.0)


def warn_unless_succeeded(jobs: list[Tracked]) -> None:
    failed = [job.name for job in jobs if job.state["status"] != "succeeded"]
    if failed:
        print(f"    WARNING: {', '.join(failed)} did not succeed: the times above are not comparable")


def stage_totals(jobs: list[Tracked]) -> str:
    totals: dict[str, float] = {}
    for job in jobs:
        for s in job.stages:
            totals[s["stage"]] = totals.get(s["stage"], 0.0) + (s.get("seconds") or 0.0)
    if not totals:
        return "(the job JSON has no stages)"
    workers = sorted({s["worker"] for job in jobs for s in job.stages if s.get("worker")})
    return (", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in totals.items())
            + f"; {sum(totals.values()):.1f} s of work in all, on {len(workers)} worker(s): {', '.join(workers)}")


def run_service(args: argparse.Namespace, windows: list[list[str]]) -> tuple[float, float, float, Tracked, Tracked]:
    """(a)'s total, (c)'s ratio to job 1, (c)'s ratio in work seconds, and (d)'s small and large jobs."""
    print()
    with bench_service(timeout=900) as service:

        # (a) every job at once: one POST per thread, as independent clients would send them.
        with ThreadPoolExecutor(max_workers=len(windows)) as pool:
            jobs = list(pool.map(lambda k: submit(service, f"job {k + 1}", windows[k]), range(len(windows))))
        first = min(job.submitted for job in jobs)
        print(f"(a) {len(jobs)} jobs of {args.n} documents submitted at once "
              f"(accepted within {time.perf_counter() - first:.1f} s)", flush=True)
        follow(service, jobs, 6 * 3600)
        total_a = max(job.finished for job in jobs) - first
        for job in jobs:
            print(f"    {job.line()}")
        print(f"    stage time summed over the jobs: {stage_totals(jobs)}")
        warn_unless_succeeded(jobs)
        print(f"(a) first submit to last job done: {total_a:.1f} s", flush=True)

        # (c) job 1 again with another min_topic_size.
        size = args.rerun_min_topic_size or default_min_topic_size(args.n, divisor=2)
        if size == default_min_topic_size(args.n):
            size += 2
        rerun = submit(service, "job 1 again", windows[0], {"min_topic_size": size})
        follow(service, [rerun], 3600)
        print(f"\n(c) job 1's documents again with min_topic_size {size} (job 1: the default, "
              f"{default_min_topic_size(args.n)}):")
        print(f"    {rerun.line()}")
        warn_unless_succeeded([rerun])
        print(f"    job 1 in (a): {jobs[0].seconds:.1f} s after its submit, alongside {len(jobs) - 1} other "
              f"job(s); {jobs[0].work:.1f} s of its own stage time")
        ratio_c = rerun.seconds / jobs[0].seconds
        ratio_work = rerun.work / jobs[0].work if jobs[0].work else float("nan")
        print(f"    submit to done against job 1's: {ratio_c:.3f}; stage time against job 1's own stage time "
              f"(without waiting for the other jobs): {ratio_work:.3f}", flush=True)

        # (d) a large job, then at once a small one.
        offset = len(windows) * args.n
        large_texts = window(args.corpus, args.large, offset)
        small_texts = window(args.corpus, args.small, offset + args.large)
        earlier = {text for texts in windows for text in texts}
        print(f"\n(d) a large job of {args.large} documents, then at once a small one of {args.small} "
              f"({sum(t in earlier for t in large_texts)} of the large job's and "
              f"{sum(t in earlier for t in small_texts)} of the small one's documents were in (a)'s jobs: "
              f"{args.corpus} has {corpus_size(args.corpus)})", flush=True)
        large = submit(service, "large job", large_texts)
        small = submit(service, "small job", small_texts, priority=args.small_priority)
        follow(service, [large, small], 4 * 3600)
        print(f"    {small.line()}")
        print(f"    {large.line()}")
        warn_unless_succeeded([small, large])
        ahead = large.finished - small.finished
        print(f"    the small job finished {abs(ahead):.1f} s {'before' if ahead >= 0 else 'after'} the large one; "
              f"its own stage time {small.work:.1f} s, so it waited about {small.seconds - small.work:.1f} s")
    return total_a, ratio_c, ratio_work, small, large


def main() -> None:
    args = arguments()
    # A plain `kill` should stop the service and the recipe run it started too: run the `finally`s, not die at once.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    size = corpus_size(args.corpus)
    print(f"CPU: {cpu_description()}; Python {platform.python_version()}")
    print(f"corpus: {args.corpus} ({size} documents), {args.jobs} windows of {args.n} documents"
          + (f" (more than the corpus holds: the windows wrap and share {args.jobs * args.n - size} documents)"
             if args.jobs * args.n > size else " (disjoint)"), flush=True)
    windows = [window(args.corpus, args.n, k * args.n) for k in range(args.jobs)]

    total_b = None if args.skip_recipe else run_recipe(args)
    service = None if args.skip_service else run_service(args, windows)

    print()
    if total_b is not None and service is not None:
        extrapolated = (f" ((b) extrapolated from {args.recipe_runs} of {args.jobs} runs)"
                        if args.recipe_runs < args.jobs else "")
        print(f"(b) {total_b:.1f} s, (a) {service[0]:.1f} s{extrapolated}")
        print(f"ratio (b)/(a): {total_b / service[0]:.2f} (goal >= 3){extrapolated}")
    else:
        print("ratio (b)/(a): n/a (" + ("--skip-recipe" if total_b is None else "--skip-service") + ")")
    if service is None:
        print("ratio (c)/(first run): n/a (--skip-service)")
        print("small job done after: n/a (--skip-service)")
        return
    _, ratio_c, ratio_work, small, large = service
    print(f"ratio (c)/(first run): {ratio_c:.3f} (goal <= 0.3; in stage time: {ratio_work:.3f})")
    print(f"small job done after: {small.seconds:.1f} s (large job: {large.seconds:.1f} s)")


if __name__ == "__main__":
    main()
