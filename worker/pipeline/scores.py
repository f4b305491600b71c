"""Scores of a topic model that a user can compare between runs: outlier share, topic diversity and NPMI
coherence of the top words on the corpus itself."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer


@dataclass(frozen=True)
class Scores:
    outlier_share: float  # documents in no topic, 0..1
    diversity: float  # unique words among all topics' top words, 0..1 (1: no word shared)
    coherence_npmi: float  # mean NPMI of top-word pairs over documents, -1..1 (higher: words co-occur)

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}


def diversity(topic_words: Sequence[Sequence[str]]) -> float:
    words = [w for topic in topic_words for w in topic]
    return len(set(words)) / len(words) if words else 0.0


def npmi_coherence(topic_words: Sequence[Sequence[str]], texts: Sequence[str], analyzer=None) -> float:
    """Mean over topics of the mean normalized PMI of each pair of its top words, counting co-occurrence in
    documents of ``texts`` (tokenized by ``analyzer``, by default sklearn's English word analyzer)."""
    vocabulary = sorted({w for topic in topic_words for w in topic})
    if not vocabulary:
        return 0.0
    vectorizer = CountVectorizer(vocabulary=vocabulary, binary=True, analyzer=analyzer or "word", lowercase=True,
                                 ngram_range=(1, max(len(w.split()) for w in vocabulary)))
    presence = vectorizer.fit_transform(texts).tocsc().astype(np.float64)  # (n_docs, V), 0/1
    n = presence.shape[0]
    index = {w: i for i, w in enumerate(vocabulary)}
    per_topic = []
    for topic in topic_words:
        columns = presence[:, [index[w] for w in topic]]
        together = (columns.T @ columns).toarray() / n  # (k, k): p(w_i, w_j), p(w_i) on the diagonal
        alone = np.diag(together)
        values = []
        for a in range(len(topic)):
            for b in range(a + 1, len(topic)):
                joint = together[a, b]
                if joint <= 0:
                    values.append(-1.0)
                elif joint >= 1:
                    values.append(1.0)
                else:
                    values.append(np.log(joint / (alone[a] * alone[b])) / -np.log(joint))
        if values:
            per_topic.append(float(np.mean(values)))
    return float(np.mean(per_topic)) if per_topic else 0.0


def score(topic_words: Sequence[Sequence[str]], doc_topics: np.ndarray, texts: Sequence[str], analyzer=None) -> Scores:
    return Scores(
        outlier_share=float((doc_topics < 0).mean()) if len(doc_topics) else 0.0,
        diversity=diversity(topic_words),
        coherence_npmi=npmi_coherence(topic_words, texts, analyzer),
    )
