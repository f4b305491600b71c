"""Keywords of topics (c-TF-IDF as topicq configures it) on real news articles."""

import numpy as np
import pytest

from tests.conftest import read_corpus
from worker.pipeline.represent import keyword_text, represent

NOISE = {"said", "says", "told", "mr", "http", "https", "www", "com", "org"}


@pytest.fixture(scope="module")
def sections():
    """240 news articles from four sections, each given a web address, and the section of each as its cluster."""
    wanted = ["sport", "business", "uk", "us"]
    records = [r for r in read_corpus("news_sections.jsonl") if r["label"] in wanted]
    texts, clusters = [], []
    for number, section in enumerate(wanted):
        for record in [r for r in records if r["label"] == section][:60]:
            texts.append(f"{record['text']}\nRead more at https://www.example.com/{section}/{len(texts)}.html")
            clusters.append(number)
    return texts, np.array(clusters, dtype=np.int32)


def test_web_and_mail_addresses_are_not_keyword_material():
    assert keyword_text("See https://docs.python.org/3/ or www.bbc.co.uk; mail a.b@x.org about HTTP").split() == [
        "see", "or", "mail", "about", "http"]


def test_keywords_leave_out_words_every_article_uses(sections, embedder):
    texts, clusters = sections
    embeddings = embedder.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    topics, doc_topics, model = represent(texts, embeddings, clusters, embedder)

    assert len(topics) == 4 and (doc_topics == clusters).all()
    for topic in topics:
        assert len(topic.keywords) == 10 and not NOISE & set(topic.keywords), topic.keywords
    words = [w for t in topics for w in t.keywords]
    assert len(set(words)) >= 0.9 * len(words), "topics should not share their keywords"

    # The same clusters through BERTopic's default c-TF-IDF and vectorizer do show that noise.
    from bertopic import BERTopic
    from bertopic.cluster import BaseCluster
    from bertopic.dimensionality import BaseDimensionalityReduction

    plain = BERTopic(embedding_model=embedder, umap_model=BaseDimensionalityReduction(), hdbscan_model=BaseCluster())
    plain.fit(texts, embeddings=embeddings, y=clusters)
    plain_words = {w for t in range(4) for w, _ in plain.get_topic(t)[:10]}
    assert NOISE & plain_words


def test_words_in_most_documents_become_stop_words_but_topic_words_stay():
    from worker.pipeline.represent import corpus_stop_words

    texts = [f"corpus wide {topic} item{n}" for topic in ("apple", "banana", "cherry") for n in range(10)]
    stop = corpus_stop_words(texts)
    assert {"corpus", "wide", "said", "the"} <= stop and not {"apple", "banana", "cherry"} & stop
    assert "corpus" not in corpus_stop_words(texts[:9])  # too few documents to tell


def test_representative_documents_leave_out_near_copies_of_a_better_one():
    from sklearn.feature_extraction.text import CountVectorizer

    from worker.pipeline.represent import distinct_best

    texts = [
        "A Python client for the Acme weather API",
        "A  python client for the Acme weather API",  # the same text, spaced and cased differently
        "A Python client for the Acme weather API v2",  # a near-copy
        "Command line tool that renames photos by their date",
        "Parse and validate TOML configuration files",
    ]
    bow = CountVectorizer().fit_transform(texts)
    assert distinct_best(np.arange(5), bow, texts) == [0, 3, 4]
    assert distinct_best(np.array([2, 0, 1, 3, 4]), bow, texts, limit=2) == [2, 3]
    assert distinct_best(np.arange(5), bow, texts, near=1.01) == [0, 2, 3, 4]  # only the exact copy goes
