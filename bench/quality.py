"""Topic quality on the labelled corpora of ../shared/data, three systems side by side in one run:
(a) TF-IDF + k-means with k = the number of labels, (b) plain BERTopic as the recipe configures it, and
(c) topicq's defaults (and a few variants, to choose them by).

For each: NMI and ARI against the labels (all documents; outliers count as one more cluster), outlier share,
number of topics, topic diversity (unique share of the top-10 words) and NPMI coherence of the top-10 words on
the corpus itself (one analyzer for all systems).

    python -m bench.quality                       # news_sections (all 1,641) and python_docs (3,000 sampled)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from shared.schemas import JobParams, default_min_topic_size
from shared.settings import Settings
from worker.models import load_embedder
from worker.pipeline.embed import embed
from worker.pipeline.run import PipelineConfig, run_pipeline
from worker.pipeline.scores import diversity, npmi_coherence

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ANALYZER = CountVectorizer(stop_words="english").build_analyzer()  # the same tokens for every system's NPMI


def sample(corpus: str, n: int) -> tuple[list[str], list[str]]:
    lines = (DATA / f"{corpus}.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines[:: max(1, len(lines) // n)][:n]]
    return [r["text"] for r in records], [r["label"] for r in records]


def tfidf_kmeans(texts: list[str], k: int):
    vectorizer = TfidfVectorizer(stop_words="english", min_df=2, max_df=0.5)
    matrix = vectorizer.fit_transform(texts)
    model = KMeans(n_clusters=k, n_init=10, random_state=42).fit(matrix)
    vocabulary = np.array(vectorizer.get_feature_names_out())
    words = [list(vocabulary[np.argsort(-center)[:10]]) for center in model.cluster_centers_]
    return model.labels_, words


def recipe_bertopic(texts: list[str], embeddings: np.ndarray, embedder):
    """BERTopic as the recipe builds it: its UMAP and HDBSCAN settings, default vectorizer and min_samples."""
    from bertopic import BERTopic
    from bertopic.representation import KeyBERTInspired, MaximalMarginalRelevance
    from hdbscan import HDBSCAN
    from umap import UMAP

    model = BERTopic(
        embedding_model=embedder,
        umap_model=UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=42),
        hdbscan_model=HDBSCAN(min_cluster_size=default_min_topic_size(len(texts)), metric="euclidean",
                              cluster_selection_method="eom", prediction_data=True),
        representation_model={"KeyBERT": KeyBERTInspired(), "MMR": MaximalMarginalRelevance(diversity=0.3)},
        top_n_words=10,
    )
    topics, _ = model.fit_transform(texts, embeddings)
    words = [[w for w, _ in model.get_topic(t)][:10] for t in sorted(set(topics)) if t >= 0]
    return np.asarray(topics), words


def topicq(texts: list[str], embeddings: np.ndarray, embedder, **params):
    result = run_pipeline(texts, JobParams(generate_labels=False, **params), embedder, None, PipelineConfig(),
                          embeddings=embeddings)
    return result.doc_topics, [t.representation.keywords for t in result.topics]


def row(name: str, truth: list[str], found: np.ndarray, words, texts, seconds: float) -> str:
    return (f"{name:<34}{normalized_mutual_info_score(truth, found):>6.3f}{adjusted_rand_score(truth, found):>7.3f}"
            f"{(found < 0).mean() * 100:>8.1f}%{len(words):>7}{diversity(words):>7.2f}"
            f"{npmi_coherence(words, texts, ANALYZER):>7.3f}{seconds:>7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python-docs", type=int, default=3000, help="sample size of python_docs")
    parser.add_argument("--variants", action="store_true", help="also score the variants the defaults came from")
    args = parser.parse_args()
    embedder = load_embedder(Settings(_env_file=None))
    for corpus, n in (("news_sections", 1641), ("python_docs", args.python_docs)):
        texts, truth = sample(corpus, n)
        embeddings = embed(texts, embedder)
        k = len(set(truth))
        print(f"\n{corpus}: {len(texts)} documents, {k} labels")
        print(f"{'system':<34}{'NMI':>6}{'ARI':>7}{'outliers':>9}{'topics':>7}{'divers':>7}{'NPMI':>7}{'sec':>7}")
        systems = {
            "(a) TF-IDF + k-means": lambda: tfidf_kmeans(texts, k),
            "(b) BERTopic, recipe": lambda: recipe_bertopic(texts, embeddings, embedder),
            "(c) topicq defaults": lambda: topicq(texts, embeddings, embedder),
        }
        if args.variants:
            systems |= {
                "(c) without outlier reduction": lambda: topicq(texts, embeddings, embedder, reduce_outliers=False),
                "(c) outlier threshold 0.4": lambda: topicq(texts, embeddings, embedder, outlier_threshold=0.4),
                "(c) outlier threshold 0.2": lambda: topicq(texts, embeddings, embedder, outlier_threshold=0.2),
                "(c) outlier threshold 0.0": lambda: topicq(texts, embeddings, embedder, outlier_threshold=0.0),
                "(c) nr_topics auto": lambda: topicq(texts, embeddings, embedder, nr_topics="auto"),
            }
        for name, system in systems.items():
            started = time.perf_counter()
            found, words = system()
            print(row(name, truth, np.asarray(found), words, texts, time.perf_counter() - started), flush=True)


if __name__ == "__main__":
    main()
