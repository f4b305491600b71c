"""The two cluster-stage steps whose settings grow with the corpus, against fixed settings, on the same PyPI
summaries and embeddings as bench/scale.py: the neighbour search (pynndescent's random-projection trees, whose
number UMAP sets to about sqrt(n)/20) and HDBSCAN (``min_samples``, a fifth of a ``min_topic_size`` that grows
as sqrt(n)/3). Each fixed setting's time, growth exponent between sizes and what it changes:

- neighbours: recall@15 against exact cosine neighbours of 1,000 sampled documents (brute force);
- HDBSCAN: on one 5-D UMAP of each size (today's graph), topics, outliers, and the adjusted Rand index of its
  clusters against those of today's setting (1.0: the same partition).

    python -m bench.scale_params                                  # 10k, 50k, 200k and 595,905
    python -m bench.scale_params --sizes 10000,50000 --trees 8 --min-samples 10

Sizes are bench/scale.py's nested samples; ``--embeddings`` as there (it embeds the largest sample once when
the file is missing). Numba's compilation is done first on 4,200 documents, untimed.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np

from bench.memory import cpu_description
from bench.scale import WARM_UP, embedding_rate, exponent, load_sample

N_QUERIES = 1000


def grown_min_samples(n: int) -> int:
    """Today's min_samples: a fifth of the default min_topic_size, which grows as sqrt(n)/3."""
    from shared.schemas import default_min_samples, default_min_topic_size

    return default_min_samples(default_min_topic_size(n))


def neighbours(embeddings: np.ndarray, n_trees: int) -> tuple[tuple[np.ndarray, np.ndarray], float]:
    from worker.pipeline.reduce import neighbour_graph

    started = time.perf_counter()
    knn = neighbour_graph(embeddings, n_trees=n_trees)
    return knn, time.perf_counter() - started


def unit_rows(embeddings: np.ndarray) -> np.ndarray:
    return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)


def recall(unit: np.ndarray, indices: np.ndarray, queries: np.ndarray) -> float:
    """Share of each query's exact 15 nearest neighbours (cosine, itself included) that the graph holds;
    ``unit``: the embeddings as unit rows (``unit_rows``), so that a dot product is their cosine."""
    k = indices.shape[1]
    found = 0
    for chunk in np.array_split(queries, max(1, len(queries) // 100)):
        similarity = unit[chunk] @ unit.T
        exact = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        found += sum(len(set(e.tolist()) & set(a.tolist())) for e, a in zip(exact, indices[chunk]))
    return found / (len(queries) * k)


def hdbscan_run(reduced: np.ndarray, min_topic_size: int, min_samples: int) -> tuple[np.ndarray, float]:
    from worker.pipeline.cluster import cluster

    started = time.perf_counter()
    _, labels = cluster(reduced, min_topic_size, min_samples)
    return labels, time.perf_counter() - started


def measure(size: int, embeddings_path: Path, trees: list[int], caps: list[int]) -> dict:
    from sklearn.metrics import adjusted_rand_score

    from shared.schemas import default_min_topic_size
    from worker.pipeline.reduce import fit_umap, search_trees

    _, embeddings = load_sample(size, embeddings_path)
    queries = np.random.default_rng(1).choice(size, size=min(N_QUERIES, size), replace=False)
    row: dict = {"size": size, "neighbours": {}, "hdbscan": {}}
    unit = unit_rows(embeddings)  # once: a copy of 0.9 GB at 595,905 documents
    today, knn = search_trees(size), None
    for n_trees in [today] + [t for t in trees if t != today]:
        graph, seconds = neighbours(embeddings, n_trees)
        row["neighbours"][n_trees] = {"seconds": seconds, "recall": recall(unit, graph[0], queries)}
        knn = graph if n_trees == today else knn
    started = time.perf_counter()
    _, reduced = fit_umap(embeddings, 5, knn=knn)
    row["umap_5d_seconds"] = time.perf_counter() - started
    del unit
    min_topic_size = default_min_topic_size(size)
    grown = grown_min_samples(size)
    reference = None
    for min_samples in [grown] + sorted({min(grown, c) for c in caps} - {grown}, reverse=True):
        labels, seconds = hdbscan_run(reduced, min_topic_size, min_samples)
        if reference is None:
            reference = labels
        row["hdbscan"][min_samples] = {
            "seconds": seconds, "topics": int(labels.max()) + 1, "outliers": float((labels < 0).mean()),
            "ari": float(adjusted_rand_score(reference, labels)),
        }
    row["min_topic_size"], row["today_trees"], row["today_min_samples"] = min_topic_size, today, grown
    return row


def warm_up(embeddings_path: Path) -> float:
    """numba's compilation of NN-descent, UMAP and HDBSCAN, once, on WARM_UP documents."""
    from worker.pipeline.reduce import fit_umap, neighbour_graph

    started = time.perf_counter()
    _, embeddings = load_sample(WARM_UP, embeddings_path)
    knn = neighbour_graph(embeddings)
    _, reduced = fit_umap(embeddings, 5, knn=knn)
    hdbscan_run(reduced, 20, 4)
    return time.perf_counter() - started


def report(rows: list[dict]) -> None:
    sizes = [r["size"] for r in rows]

    def line(name: str, cells: list[dict], render, width: int) -> None:
        """One setting's row: each size's cell, then the growth exponents of its seconds."""
        times = [c["seconds"] for c in cells]
        pairs = zip(times, times[1:], sizes, sizes[1:])
        print(f"{name:<22}" + "".join(f"{render(c):>{width}}" for c in cells) + "   "
              + " ".join(f"{exponent(t1, t2, n1, n2):.2f}" for t1, t2, n1, n2 in pairs))

    def searched(c: dict) -> str:
        return f"{c['seconds']:.1f} ({c['recall']:.3f})"

    nlogn = [exponent(a * math.log(a), b * math.log(b), a, b) for a, b in zip(sizes, sizes[1:])]
    print("growth exponent of n log n between the sizes: " + " ".join(f"{e:.2f}" for e in nlogn))
    print("\nneighbour search: seconds (recall@15 against exact cosine neighbours)")
    print(f"{'trees':<22}" + "".join(f"{n:>18,}" for n in sizes) + "   growth exponents")
    line("today (sqrt(n)/20+5)", [r["neighbours"][r["today_trees"]] for r in rows], searched, 18)
    print(f"{'':<22}" + "".join(f"{'(' + str(r['today_trees']) + ' trees)':>18}" for r in rows))
    for n_trees in sorted({t for r in rows for t in r["trees"]}):
        line(f"{n_trees} trees", [r["neighbours"][n_trees] for r in rows], searched, 18)

    print("\nHDBSCAN on one 5-D UMAP per size: seconds (topics, outliers, ARI against today's)")
    print(f"{'min_samples':<22}" + "".join(f"{n:>26,}" for n in sizes) + "   growth exponents")

    def cell(c: dict) -> str:
        return f"{c['seconds']:>7.1f} ({c['topics']:>3}, {100 * c['outliers']:>2.0f}%, {c['ari']:.2f})"

    line("today (topic size/5)", [r["hdbscan"][r["today_min_samples"]] for r in rows], cell, 26)
    settings = [f"({r['today_min_samples']}, topic size {r['min_topic_size']})" for r in rows]
    print(f"{'':<22}" + "".join(f"{x:>26}" for x in settings))
    for cap in sorted({c for r in rows for c in r["caps"]}):
        line(f"at most {cap}", [r["hdbscan"][min(cap, r["today_min_samples"])] for r in rows], cell, 26)
    print("\nUMAP 5-D alone (the HDBSCAN input, not compared): "
          + ", ".join(f"{r['size']:,}: {r['umap_5d_seconds']:.0f} s" for r in rows))


def main() -> None:
    from shared.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,50000,200000,595905")
    parser.add_argument("--trees", default="8,12", help="fixed numbers of trees to compare with today's")
    parser.add_argument("--min-samples", default="10,15", help="caps on min_samples to compare with today's")
    parser.add_argument("--embeddings", type=Path,
                        default=Settings(_env_file=None).data_dir / "scale" / "pypi_595905.npy")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    trees = [int(t) for t in args.trees.split(",") if t]
    caps = [int(c) for c in args.min_samples.split(",") if c]
    print(f"CPU: {cpu_description()}; load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    embedding_rate(args.embeddings, max(sizes))  # embeds the largest sample once when the file lacks it
    print(f"warm-up (numba's compilation, not counted): {warm_up(args.embeddings):.1f} s", flush=True)
    rows = []
    for size in sizes:
        row = measure(size, args.embeddings, trees, caps) | {"caps": caps, "trees": trees}
        print(row, flush=True)
        rows.append(row)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    report(rows)


if __name__ == "__main__":
    main()
