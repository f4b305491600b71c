"""Stage 5: one short LLM label per topic, from its representative documents and keywords."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shared.prompts import MAIN_PROMPT, build_messages, clean_label, keyword_label, normalized, truncate_words, with_keyword
from worker.labeling.base import Labeler
from worker.pipeline.progress import Progress, no_progress


@dataclass(frozen=True)
class LabelInput:
    keywords: list[str]  # top c-TF-IDF words, best first
    documents: list[str]  # representative documents, best first


@dataclass(frozen=True)
class Label:
    text: str
    source: str  # "llm", or "keywords" when the LLM was off or gave nothing usable


def label_topics(
    topics: Sequence[LabelInput],
    labeler: Labeler | None,
    *,
    doc_budget: int,
    doc_count: int | None = None,
    template: str = MAIN_PROMPT,
    progress: Progress = no_progress,
) -> list[Label]:
    """A distinct label per topic, in order (the first, largest topics keep a contested label).

    The first ``doc_count`` representative documents (all: None) go into the prompt, each cut to ``doc_budget``
    tokens (words, for a labeler without a tokenizer).
    A topic whose label another topic already has is asked once more with the taken labels listed; a clash
    that remains is settled with the topic's most distinctive keyword.
    """
    if labeler is None or not topics:
        return _distinct([Label(keyword_label(t.keywords), "keywords") for t in topics], topics)
    cut: Callable[[str, int], str] = getattr(labeler, "truncate", truncate_words)
    docs = [[cut(doc, doc_budget) for doc in t.documents[:doc_count]] for t in topics]
    total = len(topics)
    progress("labelling", 0, total)
    answers = labeler.generate(
        [build_messages(d, t.keywords, template) for d, t in zip(docs, topics)],
        on_progress=lambda done: progress("labelling", done, total),
    )
    labels = [_label(answer, topic) for answer, topic in zip(answers, topics)]

    clashes = _clashing(labels)
    if clashes:
        taken = sorted({labels[i].text for i in clashes})  # the labels to avoid (a full list could overflow 4k)
        retries = labeler.generate(
            [build_messages(docs[i], topics[i].keywords, template, taken=taken) for i in clashes]
        )
        used = {normalized(label.text) for label in labels}
        for i, answer in zip(clashes, retries):
            retry = _label(answer, topics[i])
            if retry.source == "llm" and normalized(retry.text) not in used:
                labels[i] = retry
                used.add(normalized(retry.text))
    return _distinct(labels, topics)


def _label(answer: str, topic: LabelInput) -> Label:
    cleaned = clean_label(answer)
    return Label(cleaned, "llm") if cleaned else Label(keyword_label(topic.keywords), "keywords")


def _clashing(labels: Sequence[Label]) -> list[int]:
    """Indices of labels an earlier topic already has."""
    seen: set[str] = set()
    clashes = []
    for i, label in enumerate(labels):
        key = normalized(label.text)
        if key in seen:
            clashes.append(i)
        seen.add(key)
    return clashes


def _distinct(labels: list[Label], topics: Sequence[LabelInput]) -> list[Label]:
    taken = {normalized(label.text) for label in labels}
    for i in _clashing(labels):
        text = with_keyword(labels[i].text, topics[i].keywords, taken)
        taken.add(normalized(text))
        labels[i] = Label(text, labels[i].source)
    return labels
