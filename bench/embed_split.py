"""One job's embedding shared by two worker processes, against one worker process, side by side in one run.

A job of N PyPI summaries (../shared/data/pypi_summaries.jsonl.gz, a fixed shuffled window) on a real SQLite
file, embedded by the project's embedder (the backend ``auto`` picks here, one torch/ONNX thread per process)
through the real StageRunner: first chunk plans the others, any worker takes any ready chunk, the last one
makes clustering ready. The embedding time is the job's, by the database's clock: from its first chunk's claim
to its last chunk's finish (the first chunk streams the corpus for the cache key and plans, so it includes
that serial part). Models are loaded before the clock starts. The workers' CPU seconds show whether the
machine gave them two cores: on a loaded shared machine two processes get no more CPU than one, and the ratio
says so rather than anything about the split. Runs alternate (1, 2, 2, 1, ...) so the load of
a shared machine falls on both alike.

    python -m bench.embed_split              # 20,000 documents, chunks of 2,000
    python -m bench.embed_split --n 5000 --chunk 500 --rounds 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

THREADS_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _settings(root: Path):
    from shared.settings import Settings

    return Settings(data_dir=root, database_url=f"sqlite:///{root / 'topicq.db'}", device="cpu", _env_file=None)


def worker_process(root: str, name: str, job_id: str, chunk: int, ready, start, used) -> None:
    """One gpu-queue worker: load the model, wait for the start, take the job's chunks until clustering is
    ready."""
    import torch

    torch.set_num_threads(1)
    from sqlalchemy import select

    from shared.db import make_engine, make_session_factory
    from shared.models import WorkItem
    from shared.storage import LocalArtifactStore
    from worker import models
    from worker.pipeline.run import PipelineConfig
    from worker.stages import Chunking, StageRunner

    settings = _settings(Path(root))
    embedder, kind = models.load_embedder_described(settings)
    sessions = make_session_factory(make_engine(settings))
    runner = StageRunner(
        factory=sessions, store=LocalArtifactStore(Path(root) / "artifacts"),
        embedding_model_name=models.embedding_cache_name(settings), embedding_model_ref=settings.embedding_model,
        config=PipelineConfig(embedding_batch_size=settings.embedding_batch_size), embedder=lambda: embedder,
        labeler=lambda: None, worker=name, chunking=Chunking(embed_documents=chunk),
    )
    ready.put(kind)
    start.wait()
    cpu = time.process_time()
    while True:
        with sessions() as session:
            if session.scalar(select(WorkItem.id).where(WorkItem.job_id == job_id, WorkItem.stage == "cluster")):
                used.put(time.process_time() - cpu)
                return
        if not runner.run_next("gpu"):
            time.sleep(0.05)


def one_run(root: Path, texts: list[str], workers: int, chunk: int) -> dict:
    from sqlalchemy import select

    from shared import jobs
    from shared.db import make_engine, make_session_factory, transaction
    from shared.models import WorkItem

    sessions = make_session_factory(make_engine(_settings(root)))
    with transaction(sessions) as session:
        job_id = jobs.create_job(session, name=f"{workers} workers", documents=[(t, None) for t in texts],
                                 params={"generate_labels": False}).id
    context = multiprocessing.get_context("spawn")
    ready, start, used = context.Queue(), context.Event(), context.Queue()
    processes = [context.Process(target=worker_process,
                                 args=(str(root), f"gpu-{k}", job_id, chunk, ready, start, used))
                 for k in range(workers)]
    for process in processes:
        process.start()
    kinds = {ready.get(timeout=600) for _ in processes}
    load_before = os.getloadavg()[0]
    start.set()
    cpu_seconds = sum(used.get(timeout=3600) for _ in processes)
    for process in processes:
        process.join()
        if process.exitcode:
            raise SystemExit(f"a worker process exited with code {process.exitcode}")
    with sessions() as session:
        items = list(session.scalars(select(WorkItem).where(WorkItem.job_id == job_id, WorkItem.stage == "embed")))
    seconds = (max(i.finished_at for i in items) - min(i.started_at for i in items)).total_seconds()
    first = next(i for i in items if i.chunk == 0)
    return dict(workers=workers, seconds=seconds, docs_per_s=len(texts) / seconds, chunks=len(items),
                by_worker={w: sum(i.worker == w for i in items) for w in sorted({i.worker for i in items})},
                first_chunk_s=first.seconds, cpu_seconds=cpu_seconds, kind=" / ".join(sorted(kinds)),
                load=(load_before, os.getloadavg()[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="PyPI summaries in the job")
    parser.add_argument("--chunk", type=int, default=2000,
                        help="documents per embedding chunk (TOPICQ_EMBED_CHUNK_DOCUMENTS)")
    parser.add_argument("--rounds", type=int, default=1, help="pairs of runs (1 then 2 workers, then 2 then 1, ...)")
    args = parser.parse_args()
    os.environ.update(THREADS_ENV)

    from bench.corpora import window
    from bench.memory import cpu_description
    from shared.db import migrate

    texts = window("pypi_summaries", args.n)
    print(f"pypi_summaries: {len(texts)} documents, chunks of {args.chunk}; CPU {cpu_description()}, "
          f"load {os.getloadavg()[0]:.1f} at start")
    results = {1: [], 2: []}
    for round_ in range(args.rounds):
        for workers in ((1, 2) if round_ % 2 == 0 else (2, 1)):
            root = Path(tempfile.mkdtemp(prefix=f"bench-embed-split-{workers}-"))
            migrate(_settings(root))
            result = one_run(root, texts, workers, args.chunk)
            results[workers].append(result)
            print(f"  {workers} worker(s): {result['seconds']:7.1f} s  {result['docs_per_s']:7.1f} docs/s  "
                  f"workers' CPU {result['cpu_seconds']:6.1f} s  chunks per worker {result['by_worker']}  first chunk (key + plan + embed) "
                  f"{result['first_chunk_s']:.1f} s  load {result['load'][0]:.1f} -> {result['load'][1]:.1f}"
                  f"  [{result['kind']}]")
    one, two = (sum(r["docs_per_s"] for r in results[k]) / len(results[k]) for k in (1, 2))
    print(f"\n{'workers':>8} {'docs/s':>8}\n{1:>8} {one:8.1f}\n{2:>8} {two:8.1f}\nratio 2/1: {two / one:.2f}x")
    print("Two processes of one thread each on this machine's cores stand for two accelerator machines: each GPU "
          "worker takes ready chunks the same way, so embedding runs ~2x as fast on two GPUs as long as chunks "
          "outnumber workers and the first chunk's serial part (streaming the corpus for the cache key) stays "
          "small; the job as a whole is then bounded by its clustering on the CPU worker, which one machine runs.")


if __name__ == "__main__":
    main()
