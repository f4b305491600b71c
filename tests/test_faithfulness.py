"""Label faithfulness (worker/pipeline/faithfulness.py) on hand-made vectors, and on the real embedding model."""

import numpy as np
import pytest

from worker.pipeline.faithfulness import faithfulness, flagged, nearest_labels, sample_documents


def unit(*rows):
    array = np.array(rows, dtype=np.float32)
    return array / np.linalg.norm(array, axis=1, keepdims=True)


# Three topics along three axes; topic 7's documents lean towards topic 3's axis.
DOCS = unit([1, 0.1, 0], [1, 0, 0.1], [0, 1, 0], [0.1, 1, 0], [0.8, 0.2, 0.5], [0.9, 0, 0.4], [0, 0, 1], [0, 1, 1])
TOPICS = np.array([3, 3, 5, 5, 7, 7, -1, -1])


def test_faithful_labels_score_one_and_the_job_scores_the_share_of_all_documents():
    result = faithfulness(DOCS[:4], TOPICS[:4], [3, 5], unit([1, 0, 0], [0, 1, 0]))
    assert result.scores.tolist() == [1.0, 1.0] and result.job == 1.0
    assert result.competitors.tolist() == [-1, -1] and result.counts.tolist() == [2, 2]


def test_an_unfaithful_label_scores_low_and_names_the_label_that_took_its_documents():
    labels = unit([1, 0, 0], [0, 1, 0], [0, 0.2, 1])  # topic 7's label sits on the outliers' side
    result = faithfulness(DOCS, TOPICS, [3, 5, 7], labels)
    assert result.scores.tolist() == [1.0, 1.0, 0.0]
    assert result.competitors[2] == 0  # topic 3's label took topic 7's documents
    assert result.job == pytest.approx(4 / 6)  # outliers are not counted
    assert flagged(result) == [2]
    better = faithfulness(DOCS, TOPICS, [3, 5, 7], unit([1, 0, -0.3], [0, 1, 0], [0.8, 0.1, 0.6]))
    assert better.scores[2] == 1.0 and better.job == 1.0


def test_blocks_give_the_same_nearest_labels_as_one_pass():
    rng = np.random.default_rng(0)
    docs, labels = unit(*rng.normal(size=(50, 8))), unit(*rng.normal(size=(5, 8)))
    assert (nearest_labels(docs, labels, block=7) == np.argmax(docs @ labels.T, axis=1)).all()
    assert (nearest_labels(docs, labels[:1]) == 0).all()


def test_a_topic_without_documents_scores_nan_and_is_never_flagged():
    result = faithfulness(DOCS[:2], TOPICS[:2], [3, 9], unit([1, 0, 0], [0, 1, 0]))
    assert result.scores[0] == 1.0 and np.isnan(result.scores[1]) and result.counts.tolist() == [2, 0]
    assert flagged(result) == []


def test_at_most_a_quarter_of_the_topics_are_flagged_worst_first():
    from worker.pipeline.faithfulness import Faithfulness

    scores = np.array([0.1, 0.9, 0.3, 0.2, 0.95, 0.9, 0.9, 0.9])
    result = Faithfulness(scores, np.zeros(8, dtype=int) + 1, np.full(8, 10), 0.5)
    assert flagged(result) == [0, 3]


def test_the_sample_takes_at_most_so_many_documents_per_topic_and_is_seeded():
    topics = np.array([0] * 50 + [1] * 5 + [-1] * 10)
    picked = sample_documents(topics, [0, 1], per_topic=20, seed=1)
    assert (np.bincount(topics[picked]) == [20, 5]).all() and (np.diff(picked) > 0).all()
    assert (picked == sample_documents(topics, [0, 1], per_topic=20, seed=1)).all()
    many = np.repeat(np.arange(2000), 60)  # 2,000 topics: 50 a topic keeps the job to 100,000 documents
    assert (np.bincount(many[sample_documents(many, range(2000))]) == 50).all()


def test_with_the_real_model_faithful_labels_score_higher_than_shuffled_ones(embedder):
    from worker.pipeline.embed import embed

    groups = {
        "Baking bread and pastry": ["Knead the dough and let it rise before baking the loaf.",
                                    "A croissant needs cold butter folded into the pastry many times.",
                                    "Sourdough bread uses a starter instead of commercial yeast."],
        "Football matches": ["The striker scored twice in the second half of the match.",
                             "The goalkeeper saved a penalty in the final minute.",
                             "The league title was decided on the last day of the season."],
        "Python programming": ["Use a list comprehension to build the list in one line of Python.",
                               "The function raises a KeyError when the dictionary lacks the key.",
                               "Install the package with pip inside a virtual environment."],
        "Planets and astronomy": ["Jupiter is the largest planet in the solar system.",
                                  "The telescope observed a distant galaxy and its stars.",
                                  "Mars has two small moons, Phobos and Deimos."],
    }
    names = list(groups)
    texts = [text for name in names for text in groups[name]]
    topics = np.repeat(np.arange(len(names)), 3)
    docs = embed(texts, embedder)
    faithful = faithfulness(docs, topics, range(len(names)), embed(names, embedder))
    shuffled = faithfulness(docs, topics, range(len(names)), embed(names[1:] + names[:1], embedder))
    assert faithful.job > 0.9 and shuffled.job < 0.3


def test_replacing_one_label_at_a_time_gives_what_a_fresh_pass_gives():
    from worker.pipeline.faithfulness import NearestLabels

    rng = np.random.default_rng(3)
    docs, labels = unit(*rng.normal(size=(300, 6))), unit(*rng.normal(size=(9, 6)))
    nearest = NearestLabels(docs, labels, block=64)
    for i in (4, 0, 4, 8):
        vector = unit(rng.normal(size=6))[0]
        trial = nearest.trial(i, vector)
        labels[i] = vector
        assert (trial == nearest_labels(docs, labels)).all()
        nearest.replace(i, vector)
        assert (nearest.best == nearest_labels(docs, labels)).all()
        fresh = NearestLabels(docs, labels)
        assert (nearest.second == fresh.second).all() and np.allclose(nearest.second_sim, fresh.second_sim)
