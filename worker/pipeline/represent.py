"""Stage 4: topic representations with BERTopic on the precomputed clusters.

BERTopic gets the clusters we already computed (``BaseCluster`` + ``y``) and the original embeddings, and
builds c-TF-IDF keywords, KeyBERTInspired and MMR representations, merging topics when asked to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer
from sklearn.metrics.pairwise import cosine_similarity

TOP_N_WORDS = 10
N_REPRESENTATIVE = 5
N_CANDIDATES = 500  # documents per topic scored for representativeness
# Two documents whose word sets overlap this much (cosine of their binary bags of words) are near-copies: a
# topic's representative documents, which its label prompt shows, skip all but the best of them.
NEAR_COPY = 0.8


@dataclass(frozen=True)
class TopicRepresentation:
    topic: int
    size: int
    keywords: list[str]  # top c-TF-IDF words, best first
    representations: dict[str, list[str]]  # "KeyBERT", "MMR"
    representative_docs: list[int]  # document indices, most representative first
    keyword_weights: list[float] = field(default_factory=list)  # c-TF-IDF weight of each keyword


# Web and mail addresses: their parts ("https", "www", "com", "org") would otherwise become keywords.
ADDRESS = re.compile(r"\b(?:https?://|www\.)\S+|\S+@\S+\.\w+", re.IGNORECASE)


def keyword_text(text: str) -> str:
    """A document as the keyword vectorizer sees it: lower case, web and mail addresses removed."""
    return ADDRESS.sub(" ", text).lower()


# Words that carry no topic in running prose, beyond sklearn's English list: honorifics and reporting verbs
# (news articles use "said" in 88% of documents, and British ones "Mr" before every name).
PROSE_STOP_WORDS = frozenset({"mr", "mrs", "ms", "said", "says", "told"})
MAX_DOCUMENT_SHARE = 0.5  # a word in more than half the documents describes the corpus, not a topic


def corpus_stop_words(texts: list[str], max_share: float = MAX_DOCUMENT_SHARE) -> frozenset[str]:
    """English stop words, ``PROSE_STOP_WORDS``, and the words of this corpus found in more than ``max_share``
    of its documents (counted over documents: BERTopic's own vectorizer sees one joined document per topic,
    so its max_df would count topics instead)."""
    base = ENGLISH_STOP_WORDS | PROSE_STOP_WORDS
    if len(texts) < 10:
        return base
    counter = CountVectorizer(stop_words=sorted(base), preprocessor=keyword_text, binary=True)
    try:
        presence = counter.fit_transform(texts)
    except ValueError:  # nothing but stop words
        return base
    share = np.asarray(presence.sum(axis=0)).ravel() / len(texts)
    vocabulary = counter.get_feature_names_out()
    frequent = set(vocabulary[share > max_share])
    return base | frequent if len(frequent) < len(vocabulary) else base


# The most frequent words kept for c-TF-IDF. Topics need a few dozen candidate words each (KeyBERT takes 30),
# so even 1,000 topics use far fewer; the cap bounds the vocabulary, and the (n_topics, vocabulary) c-TF-IDF
# matrix BERTopic keeps and exports, however large the corpus. It never binds below ~100k documents (python_docs'
# 14,740 paragraphs: 11k words; 595,905 PyPI summaries: 90k words at min_df=2).
MAX_VOCABULARY = 50_000


class BoundedVectorizer(CountVectorizer):
    """CountVectorizer whose vocabulary maps to plain ints: with ``max_features`` set, scikit-learn renumbers
    the kept words as numpy int64, which BERTopic's safetensors export cannot write to JSON."""

    def fit_transform(self, raw_documents, y=None):
        counts = super().fit_transform(raw_documents, y)
        self.vocabulary_ = {word: int(column) for word, column in self.vocabulary_.items()}
        return counts


def vectorizer_for(texts: list[str]) -> CountVectorizer:
    """The keyword vectorizer for a corpus: English and corpus stop words out, web addresses out, and from
    100 documents on, words of one topic only dropped (min_df=2: BERTopic fits the vectorizer on one joined
    document per topic), and at most ``MAX_VOCABULARY`` words, the most frequent."""
    return BoundedVectorizer(
        stop_words=sorted(corpus_stop_words(texts)),
        min_df=2 if len(texts) >= 100 else 1,
        max_features=MAX_VOCABULARY,
        preprocessor=keyword_text,
    )


def ctfidf_model():
    """BERTopic's c-TF-IDF as it is. Its ``reduce_frequent_words`` was measured and left off: it lifts diversity
    (0.77 -> 0.93 on news) but pushes out defining words ("file" from the files topic of the Python docs) and
    costs coherence (NPMI 0.26 -> 0.22 on news, 0.00 -> -0.19 on the Python docs); the stop words above already
    remove "said" and the like (bench/quality.py --variants)."""
    from bertopic.vectorizers import ClassTfidfTransformer

    return ClassTfidfTransformer()


def represent(
    texts: list[str],
    embeddings: np.ndarray,
    clusters: np.ndarray,
    embedding_model,
    nr_topics: int | str | None = None,
    seed: int = 42,
    vectorizer: CountVectorizer | None = None,
    ctfidf=None,
):
    """Topic representations and the final topic of each document.

    Args:
        texts: the documents, n of them.
        embeddings: shape (n, dim), the embeddings the clusters came from.
        clusters: shape (n,), cluster id per document, -1 for outliers.
        nr_topics: merge down to this many topics ("auto": BERTopic decides), or None to keep all.
        vectorizer, ctfidf: other keyword settings than topicq's (``vectorizer_for``, ``ctfidf_model``), to
            compare them (bench/quality.py).

    Returns:
        (topics, doc_topics, topic_model): one TopicRepresentation per topic (largest first, outliers
        excluded), the final topic id per document (int32, -1 = outlier), and the fitted BERTopic model.
    """
    if not (clusters >= 0).any():
        return [], np.full(len(texts), -1, dtype=np.int32), None
    if len(np.unique(clusters[clusters >= 0])) < 2:
        nr_topics = None  # nothing to merge, and BERTopic's merging fails on a single topic

    from bertopic import BERTopic
    from bertopic.cluster import BaseCluster
    from bertopic.dimensionality import BaseDimensionalityReduction
    from bertopic.representation import KeyBERTInspired, MaximalMarginalRelevance

    topic_model = BERTopic(
        embedding_model=embedding_model,
        umap_model=BaseDimensionalityReduction(),
        hdbscan_model=BaseCluster(),
        vectorizer_model=vectorizer if vectorizer is not None else vectorizer_for(texts),
        ctfidf_model=ctfidf if ctfidf is not None else ctfidf_model(),
        representation_model={
            "KeyBERT": KeyBERTInspired(),
            "MMR": MaximalMarginalRelevance(diversity=0.3),
        },
        top_n_words=TOP_N_WORDS,
        nr_topics=nr_topics,
    )
    doc_topics, _ = topic_model.fit_transform(texts, embeddings=embeddings, y=clusters)
    doc_topics = np.asarray(doc_topics, dtype=np.int32)
    sizes = np.bincount(doc_topics[doc_topics >= 0])
    representative = representative_documents(topic_model, texts, doc_topics, seed=seed)

    topics = []
    for topic in sorted(t for t in topic_model.topic_representations_ if t >= 0):
        aspects = topic_model.topic_aspects_
        topics.append(
            TopicRepresentation(
                topic=int(topic),
                size=int(sizes[topic]) if topic < len(sizes) else 0,
                keywords=_words(topic_model.topic_representations_[topic]),
                representations={name: _words(aspects.get(name, {}).get(topic, [])) for name in ("KeyBERT", "MMR")},
                representative_docs=representative.get(topic, []),
                keyword_weights=_weights(topic_model.topic_representations_[topic]),
            )
        )
    return topics, doc_topics, topic_model


def _words(pairs) -> list[str]:
    return [word for word, _score in pairs if word][:TOP_N_WORDS]


def _weights(pairs) -> list[float]:
    """The c-TF-IDF weights of ``_words``' words, in the same order."""
    return [round(float(score), 5) for word, score in pairs if word][:TOP_N_WORDS]


def representative_documents(topic_model, texts: list[str], doc_topics: np.ndarray, seed: int = 42) -> dict[int, list[int]]:
    """The documents closest to each topic's c-TF-IDF vector, as BERTopic ranks them, best first.

    Like BERTopic, each topic scores a random sample of at most 500 of its documents; unlike it, the
    result is sorted by similarity, keeps document indices, so the API can point at the documents, and leaves
    out near-copies of a better one (``distinct_best``), so a label prompt shows several documents, not one
    text several times.
    """
    rng = np.random.default_rng(seed)
    ordered_topics = sorted(topic_model.topic_representations_)  # row order of c_tf_idf_
    # Each topic's documents in index order from one stable sort, not a scan of all n documents per topic.
    by_topic = np.argsort(doc_topics, kind="stable")
    sorted_topics = doc_topics[by_topic]
    result: dict[int, list[int]] = {}
    for row, topic in enumerate(ordered_topics):
        if topic < 0:
            continue
        start, stop = np.searchsorted(sorted_topics, topic, "left"), np.searchsorted(sorted_topics, topic, "right")
        members = by_topic[start:stop]
        if len(members) > N_CANDIDATES:
            members = np.sort(rng.choice(members, N_CANDIDATES, replace=False))
        if len(members) == 0:
            result[topic] = []
            continue
        bow = topic_model.vectorizer_model.transform([texts[i] for i in members])
        scores = cosine_similarity(topic_model.ctfidf_model.transform(bow), topic_model.c_tf_idf_[row]).ravel()
        ranked = np.argsort(-scores, kind="stable")
        result[topic] = [int(members[i]) for i in distinct_best(ranked, bow, [texts[m] for m in members])]
    return result


def distinct_best(ranked: np.ndarray, bow, texts: list[str], limit: int = N_REPRESENTATIVE,
                  near: float = NEAR_COPY) -> list[int]:
    """The first ``limit`` of ``ranked`` (row numbers, best first) that are not near-copies of a better one: the
    cosine of their binary bags of words (``bow``'s rows) stays below ``near``, and their whitespace-normalised
    texts differ. Fewer than ``limit`` when the topic has fewer distinct documents."""
    from sklearn.preprocessing import normalize

    words = normalize((bow > 0).astype(np.float32))
    chosen: list[int] = []
    seen: set[str] = set()
    for i in ranked:
        text = " ".join(texts[i].split()).lower()
        if text in seen:
            continue
        if chosen and words[i].nnz and (words[chosen] @ words[i].T).max() >= near:
            continue
        chosen.append(int(i))
        seen.add(text)
        if len(chosen) == limit:
            break
    return chosen
