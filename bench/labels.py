"""Label benchmark: BERTopic's TextGeneration, one prompt per topic as the recipe runs it, against topicq's
labeller (shared-prefix KV cache, batches, stop after the label line, documents cut to a budget), on the
same topics of a real corpus, the same model and the same prompt, side by side in one run.

    python -m bench.labels       # the 10 largest topics of 800 news articles (the recipe's kind of corpus), ~10 min
    python -m bench.labels --corpus python_docs --n-docs 2000 --min-topic-size 22 --max-topics 0   # short paragraphs
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import torch

from shared.prompts import EXAMPLE_ANSWER, EXAMPLE_PROMPT, MAIN_PROMPT, SYSTEM_PROMPT, clean_label
from shared.settings import Settings
from worker.models import load_embedder
from worker.pipeline.cluster import cluster
from worker.pipeline.embed import embed
from worker.pipeline.label import LabelInput, label_topics
from worker.pipeline.reduce import fit_umap
from worker.pipeline.represent import represent

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


class SameCut:
    """Hands TextGeneration each document cut exactly as topicq's labeller cuts it (its tokenizer hook)."""

    def __init__(self, labeler, budget: int) -> None:
        self.labeler, self.budget = labeler, budget

    def encode(self, document: str) -> list[str]:
        return [self.labeler.truncate(document, self.budget)]

    def decode(self, chunks: list[str]) -> str:
        return chunks[0]


class PeakRSS:
    """Samples this process's resident memory every 20 ms; ``peak`` in GiB."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRSS:
        self.peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def gib(self) -> float:
        return self.peak / 2**30


def topics_of(corpus: str, n_docs: int, min_topic_size: int, embedder):
    lines = (DATA / f"{corpus}.jsonl").read_text().splitlines()
    texts = [json.loads(line)["text"] for line in lines[:: max(1, len(lines) // n_docs)][:n_docs]]
    embeddings = embed(texts, embedder)
    _, reduced = fit_umap(embeddings)
    _, clusters = cluster(reduced, min_topic_size, max(2, min_topic_size // 5))
    _, doc_topics, topic_model = represent(texts, embeddings, clusters, embedder)
    return texts, doc_topics, topic_model


def recipe_prompt(tokenizer) -> str:
    """The recipe's prompt rendered through the model's chat template, tags left for TextGeneration to fill."""
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": EXAMPLE_PROMPT},
        {"role": "assistant", "content": EXAMPLE_ANSWER},
        {"role": "user", "content": MAIN_PROMPT},
    ]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def arguments(**defaults) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="news_sections", choices=["news_sections", "python_docs"])
    parser.add_argument("--n-docs", type=int, default=800)
    parser.add_argument("--min-topic-size", type=int, default=15)
    parser.add_argument("--max-topics", type=int, default=10, help="label only the largest N topics (0: all)")
    parser.add_argument("--llm-model", default=None, help="TOPICQ_LLM_MODEL for this run (a hub id or a path)")
    parser.add_argument("--quantization", default="auto", choices=["auto", "none", "nf4"])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.set_defaults(**defaults)
    return parser.parse_args()


def main(args: argparse.Namespace | None = None) -> None:
    args = args or arguments()
    from bertopic.representation import TextGeneration
    from transformers import pipeline

    from worker.labeling.hf import HFLabeler

    overrides = {"llm_quantization": args.quantization, "device": args.device}
    if args.llm_model:
        overrides["llm_model"] = args.llm_model
    settings = Settings(_env_file=None, **overrides)
    embedder = load_embedder(settings)
    texts, doc_topics, topic_model = topics_of(args.corpus, args.n_docs, args.min_topic_size, embedder)
    labeler = HFLabeler.load(settings)
    base_rss = psutil.Process().memory_info().rss / 2**30

    keyword_topics = {t: words for t, words in topic_model.topic_representations_.items() if t >= 0}
    if args.max_topics and len(keyword_topics) > args.max_topics:
        # Topic ids run by size; keeping the first N keeps the rows of c_tf_idf_ aligned.
        keyword_topics = {t: keyword_topics[t] for t in sorted(keyword_topics)[: args.max_topics]}
    first_row = 1 if -1 in topic_model.topic_representations_ else 0
    c_tf_idf = topic_model.c_tf_idf_[first_row : first_row + len(keyword_topics)]
    documents = pd.DataFrame({"Document": texts, "Topic": doc_topics, "ID": range(len(texts))})
    representative, _, _, _ = topic_model._extract_representative_docs(c_tf_idf, documents, keyword_topics, 500, 5)
    n = len(keyword_topics)
    print(f"{args.corpus}: {len(texts)} documents, {n} topics; model {settings.llm_model}; "
          f"process RSS with both models loaded {base_rss:.2f} GiB")

    # (a) The recipe: a text-generation pipeline, one blocking call per topic, 500 new tokens, full documents;
    # (a') the same with each document cut exactly as topicq cuts it, to separate the engine from the budget.
    generator = pipeline("text-generation", model=labeler.model, tokenizer=labeler.tokenizer,
                         max_new_tokens=500, repetition_penalty=1.1, do_sample=False)
    budget = settings.llm_doc_tokens
    variants = {
        "(a) TextGeneration": TextGeneration(generator, prompt=recipe_prompt(labeler.tokenizer), nr_docs=5),
        "(a') same, docs cut": TextGeneration(generator, prompt=recipe_prompt(labeler.tokenizer), nr_docs=5,
                                              doc_length=1, tokenizer=SameCut(labeler, budget)),
    }
    rows, labels = {}, {}
    for name, model in variants.items():
        with PeakRSS() as memory:
            started = time.perf_counter()
            answers = model.extract_topics(topic_model, documents, c_tf_idf, keyword_topics)
            rows[name] = (time.perf_counter() - started, memory.gib)
        labels[name] = [clean_label(answers[t][0][0]) or "" for t in sorted(keyword_topics)]

    # (b) topicq's labeller on the same topics, keywords and representative documents.
    inputs = [LabelInput([w for w, _ in keyword_topics[t]], representative[t]) for t in sorted(keyword_topics)]
    with PeakRSS() as memory:
        started = time.perf_counter()
        ours = label_topics(inputs, labeler, doc_budget=budget)
        rows["(b) topicq labeller"] = (time.perf_counter() - started, memory.gib)
    labels["(b) topicq labeller"] = [label.text for label in ours]

    print(f"\n{'':24}{'labels/s':>10}{'s/label':>10}{'peak RSS GiB':>14}")
    for name, (seconds, gib) in rows.items():
        print(f"{name:24}{n / seconds:>10.3f}{seconds / n:>10.2f}{gib:>14.2f}")
    ours_seconds = rows["(b) topicq labeller"][0]
    for name in variants:
        print(f"speed-up (b) over {name.split()[0]}: {rows[name][0] / ours_seconds:.2f}x")
    names = list(rows)
    vectors = {name: embedder.encode([x or "-" for x in labels[name]], normalize_embeddings=True) for name in names}
    for name in variants:
        cosine = np.sum(vectors[name] * vectors[names[-1]], axis=1)
        same = sum(a.lower() == b.lower() for a, b in zip(labels[name], labels[names[-1]]))
        print(f"agreement of (b) with {name.split()[0]}: identical {same}/{n}, mean cosine {cosine.mean():.3f} "
              f"(min {cosine.min():.3f}; {settings.embedding_model})")
    if torch.cuda.is_available():
        print(f"GPU memory: peak allocated {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB "
              f"({torch.cuda.get_device_name()})")
    print(f"\n{'topic':>5}  " + "".join(f"{name:<40}" for name in names))
    for i, t in enumerate(sorted(keyword_topics)):
        print(f"{t:>5}  " + "".join(f"{labels[name][i][:38]:<40}" for name in names))


if __name__ == "__main__":
    main()
