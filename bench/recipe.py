"""The recipe as a plain script: what the BERTopic + Llama 2 notebook does, in a fresh process.

It imports bertopic, loads all-MiniLM-L6-v2 in sentence-transformers (torch float32, from the bundled package)
and the bundled Qwen2.5-Coder-1.5B through a transformers pipeline (BERTopic's TextGeneration with the recipe's
prompt, built by bench/labels.py's `recipe_generation`, in the precision `auto` gives transformers here), embeds
the documents, then runs `fit_transform` with the recipe's UMAP, HDBSCAN and representations (KeyBERTInspired,
MaximalMarginalRelevance, TextGeneration). It prints the number of topics and the wall time of each step; the
last line is one JSON object, which bench/jobs.py reads.

    python -m bench.recipe --corpus python_docs --n 2000 --offset 0   # bench.corpora.window(corpus, n, offset)
    python -m bench.recipe --documents docs.txt                       # one document a line (or .jsonl: "text")
    python -m bench.recipe --prepare                                   # dequantize the LLM once, then exit

HDBSCAN gets the minimum topic size and min_samples a topicq job uses by default (about sqrt(n)/3, and a fifth
of it), so both sides label a comparable number of topics: the recipe's own min_samples (equal to the size)
folds Python-docs paragraphs into two or three topics (bench/quality.py), which would time a run that labels
almost nothing. `--min-samples 0` gives HDBSCAN's own. Left out of the notebook: its 2-D UMAP for the plot.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

STARTED = time.perf_counter()  # before the heavy imports (in main): a notebook pays for them too


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="python_docs")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--offset", type=int, default=0, help="the window's first document (bench.corpora.window)")
    parser.add_argument("--documents", type=Path, help="read the documents from this .txt or .jsonl file instead")
    parser.add_argument("--min-topic-size", type=int, default=None, help="default: a topicq job's for n documents")
    parser.add_argument("--min-samples", type=int, default=None,
                        help="HDBSCAN min_samples; default: a topicq job's (a fifth of the size); 0: HDBSCAN's own")
    parser.add_argument("--llm-dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--prepare", action="store_true", help="prepare the LLM's transformers copy once and exit")
    return parser.parse_args()


def read_documents(args: argparse.Namespace) -> list[str]:
    if args.documents is None:
        from bench.corpora import window

        return window(args.corpus, args.n, args.offset)
    lines = [line for line in args.documents.read_text().splitlines() if line.strip()]
    if args.documents.suffix == ".jsonl":
        return [json.loads(line)["text"] for line in lines]
    return lines


def llm_settings(args: argparse.Namespace):
    from shared.settings import Settings

    return Settings(_env_file=None, llm_backend="transformers", llm_dtype=args.llm_dtype)


def main() -> None:
    args = arguments()
    if args.prepare:
        from worker.labeling import bundled
        from worker.labeling.hf import plan_load

        settings = llm_settings(args)
        plan = plan_load(settings)
        if plan.bundled is not None:
            print(bundled.prepare(plan.bundled, settings.model_dir, plan.prepared_dtype))
        return
    texts = read_documents(args)
    steps: dict[str, float] = {}

    def step(name: str, since: float) -> float:
        now = time.perf_counter()
        steps[name] = round(now - since, 2)
        return now

    from bertopic import BERTopic
    from bertopic.representation import KeyBERTInspired, MaximalMarginalRelevance
    from hdbscan import HDBSCAN
    from sentence_transformers import SentenceTransformer
    from umap import UMAP

    from bench.labels import recipe_generation
    from shared.schemas import default_min_samples, default_min_topic_size
    from shared.settings import BUNDLED_EMBEDDING_MODEL
    from worker.models import embedding_source

    now = step("imports", STARTED)
    embedding_model = SentenceTransformer(embedding_source(BUNDLED_EMBEDDING_MODEL))  # float32, as the recipe
    now = step("load embedding model", now)
    labeler, text_generation = recipe_generation(llm_settings(args))
    now = step("load LLM", now)

    # BERTopic calls each representation once per fit; time the LLM's share of fit_transform from outside.
    extract_topics = text_generation.extract_topics
    llm_seconds = []

    def timed_extract_topics(*call_args, **kwargs):
        started = time.perf_counter()
        try:
            return extract_topics(*call_args, **kwargs)
        finally:
            llm_seconds.append(time.perf_counter() - started)

    text_generation.extract_topics = timed_extract_topics

    embeddings = embedding_model.encode(texts)
    now = step("embed", now)
    size = args.min_topic_size or default_min_topic_size(len(texts))
    min_samples = default_min_samples(size) if args.min_samples is None else (args.min_samples or None)
    topic_model = BERTopic(
        embedding_model=embedding_model,
        umap_model=UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=42),
        hdbscan_model=HDBSCAN(min_cluster_size=size, min_samples=min_samples, metric="euclidean",
                              cluster_selection_method="eom", prediction_data=True),
        representation_model={"KeyBERT": KeyBERTInspired(), "LLM": text_generation,
                              "MMR": MaximalMarginalRelevance(diversity=0.3)},
        top_n_words=10,
        verbose=True,
    )
    topics, _ = topic_model.fit_transform(texts, embeddings)
    fit_seconds = time.perf_counter() - now
    steps["fit_transform without the LLM"] = round(fit_seconds - sum(llm_seconds), 2)
    steps["LLM labels"] = round(sum(llm_seconds), 2)
    total = time.perf_counter() - STARTED

    n_topics = len({t for t in topics if t >= 0})
    labels = [topic_model.topic_aspects_["LLM"][t][0][0].strip() for t in sorted(set(topics)) if t >= 0]
    print(f"{len(texts)} documents, min_topic_size {size}, min_samples {min_samples}: {n_topics} topics, "
          f"{100 * sum(t < 0 for t in topics) / len(texts):.1f}% outliers; LLM {labeler.model.dtype}")
    print("steps: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in steps.items()))
    print(f"labels: {labels[:5]}")
    print(f"wall time: {total:.1f} s ({steps['LLM labels'] / max(n_topics, 1):.1f} s a label)")
    print(json.dumps({"documents": len(texts), "topics": n_topics, "seconds": round(total, 2), "steps": steps,
                      "llm_dtype": str(labeler.model.dtype).removeprefix("torch."), "min_topic_size": size,
                      "labels": labels[:5]}))


if __name__ == "__main__":
    main()
