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
from bench.quality_embeddings import cached_embeddings
from shared.schemas import JobParams
from shared.settings import Settings
from shared.storage import LocalArtifactStore
from worker.pipeline.faithfulness import POOR
from worker.pipeline.run import PipelineConfig, run_pipeline


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
    seconds = time.perf_counter() - started
    faithful = result.faithful
    ids = [t.representation.topic for t in result.topics]
    print(f"\n{corpus}: {len(texts)} documents, {len(ids)} topics (chance {1 / max(len(ids), 1):.3f}), "
          f"pipeline {seconds:.0f} s (labelling {result.timings.get('labelling', 0):.0f} s)")
    if faithful is None:
        print("  not scored (no topics, or no labeler)")
        return
    asked = dict(zip(faithful.flagged, faithful.answers))
    for i, topic in enumerate(result.topics):
        before, after = faithful.scores_before[i], faithful.scores[i]
        mark = (" kept" if i in faithful.kept else f" asked: {asked[i]!r}") if i in asked else ""
        print(f"  {_f(before)} -> {_f(after)}  {topic.label.text[:60]}{mark}")
    scores = np.array([s for s in faithful.scores_before if s is not None])
    quantiles = np.quantile(scores, [0.1, 0.25, 0.5, 0.75, 0.9]) if len(scores) else []
    print("  per-topic scores before, quantiles 10/25/50/75/90%: " + " ".join(f"{q:.2f}" for q in quantiles))
    for cut in (0.3, 0.4, threshold, 0.6):
        print(f"  under {cut}: {int((scores < cut).sum())} of {len(scores)}")
    print(f"  job label faithfulness before {faithful.before:.3f}, after {faithful.after:.3f} "
          f"({len(faithful.kept)} of {len(faithful.flagged)} re-asked labels kept)")


def _f(score: float | None) -> str:
    return " -- " if score is None else f"{score:.2f}"


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
