"""Stage 5: one short LLM label per topic, from its representative documents and keywords."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from worker.labeling.base import Labeler
from worker.labeling.prompts import MAIN_PROMPT, build_messages, clean_label, keyword_label
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
    doc_words: int,
    template: str = MAIN_PROMPT,
    progress: Progress = no_progress,
) -> list[Label]:
    """A label per topic, in order; without a labeler every label is the topic's top keywords."""
    if labeler is None or not topics:
        return [Label(keyword_label(t.keywords), "keywords") for t in topics]
    conversations = [build_messages(t.documents, t.keywords, doc_words, template) for t in topics]
    total = len(conversations)
    progress("labelling", 0, total)
    answers = labeler.generate(conversations, on_progress=lambda done: progress("labelling", done, total))
    labels = []
    for topic, answer in zip(topics, answers):
        cleaned = clean_label(answer)
        labels.append(Label(cleaned, "llm") if cleaned else Label(keyword_label(topic.keywords), "keywords"))
    return labels
