"""topicq's clustering stage at 10k to 600k documents beside plain BERTopic as the recipe configures it, on the
same embeddings of the same PyPI summaries (../shared/data/pypi_summaries.jsonl.gz, 595,905 one-line texts).

For each size: time and peak resident memory of each step of topicq's cluster stage (neighbour search, UMAP to
5-D and to 2-D on that one graph, HDBSCAN, outlier reassignment, BERTopic's representations, scores, themes),
then the same for the recipe's BERTopic (fit_transform with its own UMAP, HDBSCAN(min_cluster_size=150),
CountVectorizer(stop_words="english", min_df=2, ngram_range=(1, 2)), KeyBERTInspired and MMR, plus its 2-D UMAP
for the map), each system in its own child process so sizes and systems do not pollute each other's memory.
Then the growth exponent of each step between consecutive sizes, log(t2/t1)/log(n2/n1) (1.0 is linear; n log n
from 50k to 200k is about 1.1), and the end-to-end ratio. Embedding is not timed per size: its rate is measured
once on 2,000 documents and each size's embedding time is given from it.

    python -m bench.scale                                      # 10k, 50k, 200k and 595,905
    python -m bench.scale --sizes 10000,50000 --no-bertopic    # a quick run

Sizes are nested samples: the first n of one fixed permutation (seed 0) of the corpus. ``--embeddings`` is a
float32 .npy of the whole corpus in file order (row i = line i), or of the permutation's first rows; when it is
missing, the largest size's documents are embedded once and saved there (slow: ~60 documents a second on 2
cores). Each child first runs its system on 4,200 documents untimed, so that numba's compilation (once per
worker process) is not counted as the first size's work; its time is printed apart. A child that passes
``--memory-limit`` or ``--timeout`` is stopped and its row says so.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bench.corpora import DATA
from bench.memory import PeakRSS, cpu_description

CORPUS = DATA / "pypi_summaries.jsonl.gz"
WARM_UP = 4200  # just above UMAP's exact-distance threshold (4,096), so the NN-descent path gets compiled
RECIPE_MIN_CLUSTER_SIZE = 150


def corpus_texts() -> list[str]:
    return [json.loads(line)["text"] for line in gzip.decompress(CORPUS.read_bytes()).decode().splitlines()]


def permutation(n_corpus: int) -> np.ndarray:
    return np.random.default_rng(0).permutation(n_corpus)


def load_sample(size: int, embeddings_path: Path) -> tuple[list[str], np.ndarray]:
    """The first ``size`` documents of the seed-0 permutation and their embeddings, (size, 384) float32."""
    texts = corpus_texts()
    order = permutation(len(texts))[:size]
    stored = np.load(embeddings_path, mmap_mode="r")
    if len(stored) == len(texts):  # the whole corpus in file order
        vectors = np.ascontiguousarray(stored[np.sort(order)])[np.argsort(np.argsort(order))]
    elif len(stored) >= size:  # the permutation's first rows
        vectors = np.ascontiguousarray(stored[:size])
    else:
        raise SystemExit(f"{embeddings_path} has {len(stored)} rows, fewer than {size}")
    return [texts[i] for i in order], np.asarray(vectors, dtype=np.float32)


class StepPeaks:
    """Times each named step of topicq's cluster stage and samples its peak memory (``Steps`` for bench)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.peak_gib: dict[str, float] = {}

    @contextmanager
    def step(self, name: str):
        started = time.perf_counter()
        with PeakRSS() as peak:
            yield
        self.seconds[name] = round(time.perf_counter() - started, 2)
        self.peak_gib[name] = round(peak.gib, 2)


def run_topicq(texts: list[str], embeddings: np.ndarray, embedder) -> dict:
    from shared.schemas import JobParams
    from worker.pipeline.progress import Steps
    from worker.pipeline.run import PipelineConfig, cluster_stage

    peaks = StepPeaks()

    class Watch(Steps):
        step = staticmethod(peaks.step)

    started = time.perf_counter()
    clusters = cluster_stage(texts, embeddings, JobParams(generate_labels=False), embedder, PipelineConfig(),
                             steps=Watch())
    return {"seconds": peaks.seconds, "peak_gib": peaks.peak_gib, "total": round(time.perf_counter() - started, 2),
            "topics": len(clusters.representations), "outliers": round(float((clusters.doc_topics < 0).mean()), 3)}


def run_bertopic(texts: list[str], embeddings: np.ndarray, embedder) -> dict:
    """The recipe's BERTopic on precomputed embeddings, then its 2-D UMAP of the same embeddings for the map."""
    from bertopic import BERTopic
    from bertopic.representation import KeyBERTInspired, MaximalMarginalRelevance
    from hdbscan import HDBSCAN
    from sklearn.feature_extraction.text import CountVectorizer
    from umap import UMAP

    seconds, peak_gib = {}, {}
    started = time.perf_counter()
    model = BERTopic(
        embedding_model=embedder,
        umap_model=UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=42),
        hdbscan_model=HDBSCAN(min_cluster_size=min(RECIPE_MIN_CLUSTER_SIZE, len(texts) // 4), metric="euclidean",
                              cluster_selection_method="eom", prediction_data=True),
        vectorizer_model=CountVectorizer(stop_words="english", min_df=2, ngram_range=(1, 2)),
        representation_model={"KeyBERT": KeyBERTInspired(), "MMR": MaximalMarginalRelevance(diversity=0.3)},
    )
    with PeakRSS() as peak:
        topics, _ = model.fit_transform(texts, embeddings)
    seconds["fit_transform"], peak_gib["fit_transform"] = round(time.perf_counter() - started, 2), round(peak.gib, 2)
    now = time.perf_counter()
    with PeakRSS() as peak:
        UMAP(n_neighbors=15, n_components=2, min_dist=0.0, metric="cosine", random_state=42).fit_transform(embeddings)
    seconds["umap 2-D map"], peak_gib["umap 2-D map"] = round(time.perf_counter() - now, 2), round(peak.gib, 2)
    topics = np.asarray(topics)
    return {"seconds": seconds, "peak_gib": peak_gib, "total": round(time.perf_counter() - started, 2),
            "topics": len(set(topics[topics >= 0].tolist())), "outliers": round(float((topics < 0).mean()), 3)}


def child(system: str, size: int, embeddings_path: Path) -> None:
    """One system at one size, in this process: warm-up, then the timed run; prints one JSON line."""
    import warnings

    warnings.filterwarnings("ignore")
    from shared.settings import Settings
    from worker.models import load_embedder

    embedder = load_embedder(Settings(_env_file=None))
    texts, embeddings = load_sample(size, embeddings_path)
    run = run_topicq if system == "topicq" else run_bertopic
    started = time.perf_counter()
    run(texts[:WARM_UP], embeddings[:WARM_UP], embedder)
    warm_up = round(time.perf_counter() - started, 1)
    result = run(texts, embeddings, embedder)
    print(json.dumps({"system": system, "size": size, "warm_up": warm_up, **result}), flush=True)


def spawn(system: str, size: int, embeddings_path: Path, timeout: float, memory_limit_gib: float) -> dict:
    """``child`` in a fresh interpreter, stopped when its resident memory passes the limit or time runs out."""
    import psutil

    command = [sys.executable, "-m", "bench.scale", "--child", system, "--sizes", str(size),
               "--embeddings", str(embeddings_path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    watched = psutil.Process(process.pid)
    started, peak, reason = time.monotonic(), 0.0, None
    while process.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss / 2**30)
        except psutil.NoSuchProcess:
            break
        if peak > memory_limit_gib:
            reason = f"stopped: over {memory_limit_gib:g} GiB"
        elif time.monotonic() - started > timeout:
            reason = f"stopped: over {timeout:.0f} s"
        if reason:
            process.kill()
            break
        time.sleep(0.2)
    output = process.communicate()[0]
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if reason or process.returncode != 0 or not lines:
        return {"system": system, "size": size, "failed": reason or f"exit {process.returncode}"}
    return json.loads(lines[-1]) | {"process_peak_gib": round(peak, 2)}


def embedding_rate(embeddings_path: Path, largest: int) -> float:
    """Documents a second through topicq's embedder here (2,000 of the corpus); embeds and saves the largest
    sample first when ``embeddings_path`` is missing or holds fewer rows (an earlier, smaller run's)."""
    from shared.settings import Settings
    from worker.models import load_embedder
    from worker.pipeline.embed import embed

    embedder = load_embedder(Settings(_env_file=None))
    texts = corpus_texts()
    order = permutation(len(texts))
    stored = len(np.load(embeddings_path, mmap_mode="r")) if embeddings_path.exists() else 0
    if stored < min(largest, len(texts)):
        print(f"embedding {largest} documents into {embeddings_path} (once; it held {stored})", flush=True)
        embeddings_path.parent.mkdir(parents=True, exist_ok=True)
        np.save(embeddings_path, embed([texts[i] for i in order[:largest]], embedder))
    probe = [texts[i] for i in order[-2000:]]
    started = time.perf_counter()
    embed(probe, embedder)
    return len(probe) / (time.perf_counter() - started)


def exponent(t1: float, t2: float, n1: int, n2: int) -> float:
    return math.log(max(t2, 1e-3) / max(t1, 1e-3)) / math.log(n2 / n1)


def report(results: list[dict], sizes: list[int], rate: float) -> None:
    by = {(r["system"], r["size"]): r for r in results}
    for system in ("topicq", "bertopic"):
        rows = [by.get((system, n)) for n in sizes]
        if not any(rows):
            continue
        steps = list(dict.fromkeys(s for r in rows if r and "seconds" in r for s in r["seconds"]))
        print(f"\n{system}: seconds (peak GiB of the process) per step, the warm-up apart")
        print(f"{'step':<16}" + "".join(f"{n:>20,}" for n in sizes) + "   growth exponents")
        for name in steps + ["total"]:
            cells, times = [], []
            for r in rows:
                if not r or "failed" in r:
                    cells.append(f"{(r or {}).get('failed', '-')[:19]:>20}")
                    times.append(None)
                    continue
                t = r["total"] if name == "total" else r["seconds"].get(name)
                gib = r.get("process_peak_gib") if name == "total" else r["peak_gib"].get(name)
                cells.append(f"{t:>10.1f} ({gib:>5.2f})" if t is not None else f"{'-':>20}")
                times.append(t)
            exps = [f"{exponent(times[i], times[i + 1], sizes[i], sizes[i + 1]):.2f}"
                    for i in range(len(sizes) - 1) if times[i] is not None and times[i + 1] is not None]
            print(f"{name:<16}" + "".join(cells) + "   " + " ".join(exps))
        summary = [f"{n:,}: {r['topics']} topics, {100 * r['outliers']:.0f}% outliers, warm-up {r['warm_up']} s"
                   for n, r in zip(sizes, rows) if r and "failed" not in r]
        print("  " + "; ".join(summary))
    print(f"\nembedding (not in the totals): {rate:.0f} documents/s here -> "
          + ", ".join(f"{n:,}: {n / rate:.0f} s" for n in sizes))
    ratios = []
    for n in sizes:
        ours, theirs = by.get(("topicq", n)), by.get(("bertopic", n))
        if ours and theirs and "failed" not in ours and "failed" not in theirs:
            ratios.append(f"{n:,}: BERTopic {theirs['total']:.0f} s / topicq {ours['total']:.0f} s = "
                          f"{theirs['total'] / ours['total']:.2f}x")
        elif theirs and "failed" in theirs:
            ratios.append(f"{n:,}: BERTopic {theirs['failed']}")
    if ratios:
        print("end to end (cluster stage vs fit_transform + map): " + "; ".join(ratios))


def main() -> None:
    from shared.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,50000,200000,595905")
    parser.add_argument("--no-bertopic", action="store_true", help="skip plain BERTopic")
    parser.add_argument("--embeddings", type=Path,
                        default=Settings(_env_file=None).data_dir / "scale" / "pypi_595905.npy")
    parser.add_argument("--timeout", type=float, default=3 * 3600, help="seconds per system and size")
    parser.add_argument("--memory-limit", type=float, default=12.0, help="GiB per child process")
    parser.add_argument("--child", choices=["topicq", "bertopic"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.child:
        return child(args.child, sizes[0], args.embeddings)
    print(f"CPU: {cpu_description()}; load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    rate = embedding_rate(args.embeddings, max(sizes))
    results = []
    for size in sizes:
        for system in ("topicq",) + (() if args.no_bertopic else ("bertopic",)):
            result = spawn(system, size, args.embeddings, args.timeout, args.memory_limit)
            print(json.dumps(result), flush=True)
            results.append(result)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    report(results, sizes, rate)


if __name__ == "__main__":
    main()
