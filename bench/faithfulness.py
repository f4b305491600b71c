"""Label faithfulness on real jobs: topicq's pipeline with the real models on a sample of a corpus, each topic's
score (the share of its documents whose nearest label is its own), their distribution, and the job's score
before and after the unfaithful topics are asked again.

    python -m bench.faithfulness                                # 2,000 of python_docs and of news_sections
    python -m bench.faithfulness --corpora news_sections --n-docs 1000
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.corpora import sample
from bench.quality import cached_embeddings
from shared.schemas import JobParams
from shared.settings import Settings
from shared.storage import LocalArtifactStore
from worker.pipeline.embed import embed
from worker.pipeline.faithfulness import POOR, faithfulness, sample_documents
from worker.pipeline.reask import reask_unfaithful
from worker.pipeline.run import PipelineConfig, label_inputs, run_pipeline


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", nargs="+", default=["python_docs", "news_sections"])
    parser.add_argument("--n-docs", type=int, default=2000)
    parser.add_argument("--threshold", type=float, default=POOR)
    return parser.parse_args()


def one_corpus(corpus: str, n_docs: int, threshold: float, settings: Settings, models, store) -> None:
    texts, _truth = sample(corpus, n_docs)
    embeddings = cached_embeddings(texts, models.embedder, settings.embedding_model, settings.embedding_windows, store)
    config = PipelineConfig(embedding_batch_size=settings.embedding_batch_size,
                            embedding_windows=settings.embedding_windows,
                            doc_tokens=settings.llm_doc_tokens, doc_count=settings.llm_docs)
    started = time.perf_counter()
    result = run_pipeline(texts, JobParams(), models.embedder, models.labeler, config, embeddings=embeddings)
    labelled = time.perf_counter() - started
    ids = [t.representation.topic for t in result.topics]
    labels = [t.label for t in result.topics]
    picked = sample_documents(result.doc_topics, ids)
    embed_labels = lambda texts: embed(list(texts), models.embedder, config.embedding_batch_size)  # noqa: E731
    plain = faithfulness(embeddings[picked], result.doc_topics[picked], ids,
                         embed_labels([label.text for label in labels]))
    print(f"\n{corpus}: {len(texts)} documents, {len(ids)} topics (chance {1 / max(len(ids), 1):.3f}), "
          f"pipeline {labelled:.0f} s")
    for i, topic in enumerate(result.topics):
        rival = int(plain.competitors[i])
        print(f"  {plain.scores[i]:5.2f}  n={plain.counts[i]:<4} {topic.label.text[:50]:<52}"
              f"{'<- ' + labels[rival].text[:40] if rival >= 0 else ''}")
    scores = plain.scores[~np.isnan(plain.scores)]
    quantiles = np.quantile(scores, [0.1, 0.25, 0.5, 0.75, 0.9]) if len(scores) else []
    print("  per-topic quantiles 10/25/50/75/90%: " + " ".join(f"{q:.2f}" for q in quantiles))
    print(f"  under {threshold}: {int((scores < threshold).sum())} of {len(scores)}")
    started = time.perf_counter()
    texts_by_index = dict(enumerate(texts))
    outcome = reask_unfaithful(labels, label_inputs([t.representation for t in result.topics], texts_by_index),
                               embeddings[picked], result.doc_topics[picked], ids, embed_labels, models.labeler,
                               doc_budget=config.doc_tokens, doc_count=config.doc_count, threshold=threshold)
    for i in outcome.flagged:
        print(f"  asked again: {labels[i].text!r} -> {outcome.labels[i].text!r}"
              f"{' (kept)' if i in outcome.kept else ' (not kept)'}")
    print(f"  job faithfulness before {outcome.before:.3f}, after {outcome.after:.3f} "
          f"({len(outcome.kept)} of {len(outcome.flagged)} new labels kept, {time.perf_counter() - started:.0f} s)")


def main() -> None:
    from worker.models import get_models

    args = arguments()
    settings = Settings(_env_file=None)
    models = get_models(settings)
    store = LocalArtifactStore(settings.data_dir / "artifacts")
    for corpus in args.corpora:
        one_corpus(corpus, args.n_docs, args.threshold, settings, models, store)


if __name__ == "__main__":
    main()
