"""The label stage's own logic (distinct labels, budgets, fallbacks) with a scripted labeler; the real LLM
is exercised in test_labeler.py and the end-to-end test."""

from worker.pipeline.label import LabelInput, label_topics


class Scripted:
    """Answers each round from a list of answer lists; records the conversations it got."""

    name = "scripted"

    def __init__(self, *rounds):
        self.rounds = list(rounds)
        self.asked = []

    def generate(self, conversations, on_progress=None):
        self.asked.append(conversations)
        answers = self.rounds.pop(0)
        assert len(answers) == len(conversations)
        return answers

    def truncate(self, text, max_tokens):
        return " ".join(text.split()[:max_tokens]) + " [cut]"


TOPICS = [
    LabelInput(["python", "numpy", "arrays"], ["numpy arrays in python " * 20]),
    LabelInput(["qt", "widgets", "gui"], ["qt widgets"]),
    LabelInput(["python", "pandas", "frames"], ["pandas data frames"]),
]


def test_a_clashing_label_is_asked_again_with_the_taken_labels():
    labeler = Scripted(["Python Libraries", "Qt Framework", "python libraries."], ["Pandas Data Frames"])
    labels = label_topics(TOPICS, labeler, doc_budget=5)
    assert [l.text for l in labels] == ["Python Libraries", "Qt Framework", "Pandas Data Frames"]
    assert len(labeler.asked[1]) == 1
    retry_prompt = labeler.asked[1][0][-1]["content"]
    assert "already used for other topics: 'python libraries'." in retry_prompt and "pandas, frames" in retry_prompt


def test_a_clash_that_remains_is_settled_by_a_keyword():
    labeler = Scripted(["Python Libraries", "Qt Framework", "Python Libraries"], ["Qt Framework"])
    labels = label_topics(TOPICS, labeler, doc_budget=5)
    assert [l.text for l in labels] == ["Python Libraries", "Qt Framework", "Python Libraries (pandas)"]
    assert all(l.source == "llm" for l in labels)


def test_documents_are_cut_to_the_budget_and_empty_answers_fall_back_to_keywords():
    labeler = Scripted(["", "Qt Framework", "Pandas"])
    labels = label_topics(TOPICS, labeler, doc_budget=5)
    assert labels[0].text == "python, numpy, arrays" and labels[0].source == "keywords"
    first_prompt = labeler.asked[0][0][-1]["content"]
    assert "- numpy arrays in python numpy [cut]\n" in first_prompt


def test_without_a_labeler_topics_are_named_by_distinct_keywords():
    same = [LabelInput(["a", "b"], []), LabelInput(["a", "b", "c"], [])]
    labels = label_topics(same, None, doc_budget=5)
    assert [l.text for l in labels] == ["a, b", "a, b, c"]
    assert {l.source for l in labels} == {"keywords"}


def test_the_prompt_shows_the_first_doc_count_documents():
    topics = [LabelInput(["a", "b"], ["first doc", "second doc", "third doc"])]
    labeler = Scripted(["Letters"])
    label_topics(topics, labeler, doc_budget=5, doc_count=2)
    (conversation,) = labeler.asked[0]
    prompt = conversation[-1]["content"]
    assert "first doc" in prompt and "second doc" in prompt and "third doc" not in prompt


def test_a_theme_prompt_lists_at_most_its_largest_topics():
    import numpy as np

    from worker.pipeline.label import Label
    from worker.pipeline.represent import TopicRepresentation
    from worker.pipeline.levels import THEME_TOPICS, label_themes

    n = THEME_TOPICS + 15
    representations = [TopicRepresentation(i, n - i, [f"word{i}"], {}, []) for i in range(n)]
    labels = [Label(f"Topic {i}", "llm") for i in range(n)]
    labeler = Scripted(["One broad theme"])
    (theme,) = label_themes(representations, labels, np.zeros(n, dtype=np.int32), labeler, lambda *_: None)
    prompt = labeler.asked[0][0][-1]["content"]
    assert prompt.count("\n- ") == THEME_TOPICS and "Topic 0 " in prompt and f"Topic {n - 1} " not in prompt
    assert theme.topics == list(range(n)) and theme.label.text == "One broad theme"


def test_a_theme_answered_with_one_of_its_topics_labels_is_asked_again():
    import numpy as np

    from worker.pipeline.label import Label
    from worker.pipeline.represent import TopicRepresentation
    from worker.pipeline.levels import label_themes

    representations = [TopicRepresentation(i, 10 - i, [f"word{i}"], {}, []) for i in range(4)]
    labels = [Label(text, "llm") for text in ["Card games", "Board games", "Text editors", "Image viewers"]]
    labeler = Scripted(["card games", "Desktop applications"], ["Tabletop games"])
    themes = label_themes(representations, labels, np.array([0, 0, 1, 1], dtype=np.int32), labeler, lambda *_: None)
    assert [t.label.text for t in themes] == ["Tabletop games", "Desktop applications"]
    retry = labeler.asked[1][0][-1]["content"]
    assert "'card games'" in retry and "Board games" in retry  # the taken label, and the theme's own topics


def test_a_label_language_is_asked_for_in_every_prompt_retries_and_themes_included():
    import numpy as np

    from worker.pipeline.label import Label
    from worker.pipeline.represent import TopicRepresentation
    from worker.pipeline.levels import label_themes

    labeler = Scripted(["Bibliothèques Python", "Qt", "bibliothèques python"], ["Tableaux de données"])
    labels = label_topics(TOPICS, labeler, doc_budget=5, language="French")
    assert [l.text for l in labels] == ["Bibliothèques Python", "Qt", "Tableaux de données"]
    prompts = [c[-1]["content"] for round_ in labeler.asked for c in round_]
    assert len(prompts) == 4 and all(p.endswith("Write the label in French, whatever language the documents are in.")
                                     for p in prompts)
    representations = [TopicRepresentation(i, 3 - i, [f"word{i}"], {}, []) for i in range(3)]
    themes = Scripted(["Programmation"])
    label_themes(representations, labels, np.zeros(3, dtype=np.int32), themes, lambda *_: None, language="French")
    assert "Write the label in French" in themes.asked[0][0][-1]["content"]
    plain = Scripted(["Python Libraries", "Qt", "Pandas"])
    label_topics(TOPICS, plain, doc_budget=5)
    assert not any("Write the label in" in c[-1]["content"] for c in plain.asked[0])
    assert all(isinstance(l, Label) for l in labels)


def _hierarchy(n_themes=4, per_theme=2):
    """Topics (``per_theme`` to each of ``n_themes`` themes, largest first) with labels and theme results."""
    from worker.pipeline.label import Label
    from worker.pipeline.represent import TopicRepresentation
    from worker.pipeline.levels import ThemeResult

    n = n_themes * per_theme
    representations = [TopicRepresentation(i, 100 - i, [f"word{i}", f"term{i}", f"extra{i}", f"more{i}"], {}, [])
                       for i in range(n)]
    labels = [Label(f"Topic {i}", "llm") for i in range(n)]
    themes = [ThemeResult(th, Label(f"Theme {th}", "llm"), [th * per_theme + k for k in range(per_theme)],
                          sum(100 - (th * per_theme + k) for k in range(per_theme))) for th in range(n_themes)]
    return representations, labels, themes


def test_a_domain_prompt_holds_its_themes_labels_a_few_of_their_topics_and_its_keywords():
    import numpy as np

    from worker.pipeline.levels import DOMAIN_THEME_TOPICS, label_domains

    representations, labels, themes = _hierarchy(n_themes=4, per_theme=DOMAIN_THEME_TOPICS + 2)
    labeler = Scripted(["Science", "Leisure"])
    domains = label_domains(themes, labels, representations, np.array([0, 1, 0, 1], dtype=np.int32), labeler,
                            lambda *_: None, language="French")
    assert [(d.domain, d.label.text, d.themes) for d in domains] == [(0, "Science", [0, 2]), (1, "Leisure", [1, 3])]
    assert domains[0].size == themes[0].size + themes[2].size and domains[0].label.provenance["answer"] == "Science"
    prompt = labeler.asked[0][0][-1]["content"]
    assert "domain" in prompt and "- Theme 0 (topics: Topic 0; Topic 1; Topic 2)" in prompt and "Theme 2" in prompt
    assert "Theme 1" not in prompt and "Topic 3" not in prompt  # only the first topics of each theme
    assert "word0, term0, extra0" in prompt and "more0" not in prompt  # a topic's top three keywords
    assert prompt.endswith("Write the label in French, whatever language the documents are in.")


def test_a_domain_answered_with_a_themes_label_is_asked_again_and_domains_are_distinct():
    import numpy as np

    from worker.pipeline.levels import label_domains

    representations, labels, themes = _hierarchy(n_themes=6)
    labeler = Scripted(["theme 0", "Leisure", "leisure"], ["Science", "Hobbies"])
    domains = label_domains(themes, labels, representations, np.array([0, 1, 2, 0, 1, 2], dtype=np.int32),
                            labeler, lambda *_: None)
    assert [d.label.text for d in domains] == ["Science", "Leisure", "Hobbies"]
    retry = labeler.asked[1][0][-1]["content"]
    assert "'theme 0'" in retry and "Theme 3" in retry  # the taken label, and the domain's own themes
    assert [r["reason"] for r in domains[0].label.provenance["retries"]] == ["label taken"]


def test_domains_without_a_labeler_are_named_by_their_keywords_and_none_without_domains():
    import numpy as np

    from worker.pipeline.levels import label_domains

    representations, labels, themes = _hierarchy(n_themes=4)
    domains = label_domains(themes, labels, representations, np.array([0, 0, 1, 1], dtype=np.int32), None,
                            lambda *_: None)
    assert [(d.label.text, d.label.source) for d in domains] == [("word0, term0, extra0, word1", "keywords"),
                                                                ("word4, term4, extra4, word5", "keywords")]
    assert label_domains(themes, labels, representations, np.array([], dtype=np.int32), None, lambda *_: None) == []


def test_the_levels_run_in_order_on_the_scored_labels_with_one_progress_bar():
    """label_levels, as both the one-process pipeline and the worker's label item run it: the labels are scored
    first (the bar moving through the share of the re-asks meanwhile) and the themes are asked about the kept
    labels, then the domains; the bar counts on from the topic labels to one step per topic, re-ask, theme and
    domain; ``between`` runs after each level."""
    import numpy as np

    from worker.pipeline.label import Label
    from worker.pipeline.levels import label_levels
    from worker.pipeline.reask import FaithfulLabels

    representations, labels, _ = _hierarchy(n_themes=4)  # 8 topics
    theme_of, domain_of = np.repeat(np.arange(4, dtype=np.int32), 2), np.array([0, 0, 1, 1], dtype=np.int32)
    kept = [Label("Rewritten 0", "llm"), *labels[1:]]
    events = []

    def score(given):
        events.append(("score", [l.text for l in given]))
        return FaithfulLabels(kept, [0.9] * 8, 0.5, 0.6, [0], [0])

    labeler = Scripted(["A", "B", "C", "D"], ["Upper", "Lower"])
    levels = label_levels(representations, labels, theme_of, domain_of, labeler,
                          progress=lambda stage, done, total: events.append((stage, done, total)), score=score,
                          between=lambda: events.append("between"))
    assert [t.label.text for t in levels.themes] == ["A", "B", "C", "D"]
    assert [d.label.text for d in levels.domains] == ["Upper", "Lower"] and levels.labels is kept
    # 8 topics, at most 2 of them asked again, 4 themes, 2 domains: 16 steps, the scoring's share from 8 to 10.
    assert events[1] == ("score", [f"Topic {i}" for i in range(8)]) and events.count("between") == 2
    assert "Rewritten 0" in labeler.asked[0][0][-1]["content"]  # the first theme saw the kept label
    shares = [e[1] / e[2] for e in events if isinstance(e, tuple) and e[0] != "score"]
    # The scripted labeller reports no progress of its own: each level's bar starts where the one below ends.
    assert shares[0] == 8 / 16 and 10 / 16 in shares and 14 / 16 in shares
    assert shares == sorted(shares) and shares[-1] <= 1
    unscored = label_levels(representations, labels, theme_of, domain_of, None)
    assert unscored.faithful is None and unscored.labels is labels and len(unscored.domains) == 2


def _embed_from(table):
    import numpy as np

    def embed_labels(texts):
        rows = np.array([table[t] for t in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    return embed_labels


def test_an_unfaithful_label_is_asked_again_with_its_competitor_and_kept_only_when_it_scores_better():
    import numpy as np

    from worker.pipeline.label import Label
    from worker.pipeline.reask import reask_unfaithful

    docs = np.array([[1, 0, 0], [1, 0.1, 0], [0, 1, 0], [0.1, 1, 0], [0.7, 0.1, 0.7], [0.8, 0, 0.6]], dtype=np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    doc_topics = np.array([0, 0, 1, 1, 2, 2])
    labels = [Label("Python Libraries", "llm"), Label("Qt Framework", "llm"), Label("Pandas", "llm")]
    table = {"Python Libraries": [1, 0, 0], "Qt Framework": [0, 1, 0], "Pandas": [0.3, 0, -1],
             "Pandas Data Frames": [0.6, 0, 0.8], "Qt Widgets": [0, 1, 0.1]}
    labeler = Scripted(["Pandas Data Frames"])
    outcome = reask_unfaithful(labels, TOPICS, docs, doc_topics, [0, 1, 2], _embed_from(table), labeler,
                               doc_budget=5)
    (conversation,) = labeler.asked[0]
    prompt = conversation[-1]["content"]
    assert "This topic was labelled 'Pandas'" in prompt and "topic, labelled 'Python Libraries'" in prompt
    assert "- numpy arrays in python numpy [cut]" in prompt  # the competitor's document
    assert "pandas data frames" in prompt  # its own document, then the competitor's
    assert outcome.flagged == [2] and outcome.kept == [2]
    assert [l.text for l in outcome.labels] == ["Python Libraries", "Qt Framework", "Pandas Data Frames"]
    assert outcome.before == 4 / 6 and outcome.after == 1.0 and outcome.scores == [1.0, 1.0, 1.0]
    (retry,) = outcome.labels[2].provenance["retries"]  # the re-ask is part of the label's provenance
    assert retry == {"reason": "unfaithful", "messages": conversation, "answer": "Pandas Data Frames", "kept": True}

    worse = Scripted(["Qt Widgets"])  # nearer Qt's documents than its own: not kept
    outcome = reask_unfaithful(labels, TOPICS, docs, doc_topics, [0, 1, 2], _embed_from(table), worse, doc_budget=5)
    assert outcome.kept == [] and outcome.labels[2].text == "Pandas" and outcome.after == outcome.before
    assert outcome.labels[2].provenance["retries"][0]["kept"] is False

    taken = Scripted(["qt framework"])  # another topic's label: never taken
    outcome = reask_unfaithful(labels, TOPICS, docs, doc_topics, [0, 1, 2], _embed_from(table), taken, doc_budget=5)
    assert outcome.kept == [] and outcome.labels[2].text == "Pandas"


def test_each_label_carries_its_prompts_raw_answers_and_labeller():
    labeler = Scripted(["Python Libraries", "Qt Framework", "python libraries."], ["Pandas Data Frames"])
    labels = label_topics(TOPICS, labeler, doc_budget=5, doc_count=1)
    first = labels[0].provenance
    assert first["labeler"] == {"backend": "Scripted", "model": "scripted",
                                "settings": {"decoding": "greedy", "doc_tokens": 5, "doc_count": 1}}
    assert first["messages"] == labeler.asked[0][0] and first["answer"] == "Python Libraries"
    assert first["retries"] == []
    third = labels[2].provenance
    assert third["answer"] == "python libraries." and third["messages"] == labeler.asked[0][2]
    assert third["retries"] == [{"reason": "label taken", "messages": labeler.asked[1][0],
                                 "answer": "Pandas Data Frames", "kept": True}]
    assert label_topics(TOPICS, None, doc_budget=5)[0].provenance is None  # keyword labels: no LLM asked
