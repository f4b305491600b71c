"""Topics whose label is unfaithful (it picks out few of their documents) asked once more, with the label and
documents of the topic that took most of theirs in the prompt; a new label is kept only where it scores better."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from shared.prompts import MAIN_PROMPT, build_messages, clean_label, contrast_note, normalized, truncate_words
from worker.labeling.base import Labeler
from worker.pipeline.faithfulness import POOR, Faithfulness, NearestLabels, agreement, flagged, own_topics
from worker.pipeline.label import Label, LabelInput, retried

COMPETITOR_DOCS = 2  # documents of the competing topic shown in the prompt

EmbedLabels = Callable[[list[str]], np.ndarray]  # label texts (k,) -> unit vectors (k, d)


@dataclass(frozen=True)
class FaithfulLabels:
    labels: list[Label]  # in topic order; the re-asked ones replaced where their new label was kept
    scores: list[float | None]  # (k,) each topic's faithfulness with these labels; None: no document scored
    before: float | None  # the job's faithfulness with the labels as they came
    after: float | None  # and with these labels
    flagged: list[int]  # indices of the topics asked again
    kept: list[int]  # those of them whose new label was kept
    answers: list[str | None] = field(default_factory=list)  # the cleaned answer of each flagged topic
    scores_before: list[float | None] = field(default_factory=list)  # (k,) each topic's, with the labels as they came


def reask_unfaithful(
    labels: Sequence[Label],
    topics: Sequence[LabelInput],
    doc_embeddings: np.ndarray,
    doc_topics: np.ndarray,
    topic_ids: Sequence[int],
    embed_labels: EmbedLabels,
    labeler: Labeler | None,
    *,
    doc_budget: int,
    doc_count: int | None = None,
    threshold: float = POOR,
    template: str = MAIN_PROMPT,
    language: str | None = None,
) -> FaithfulLabels:
    """Score ``labels`` (one per topic of ``topic_ids``, with their label inputs ``topics``) on the documents
    (n, d) unit embeddings and their topics (n,) (a sample: ``faithfulness.sample_documents``), ask the flagged
    topics again in one labeller batch, and keep a new label only where the topic's score goes up, the job's
    does not go down and no other topic of the job has it."""
    labels, k = list(labels), len(topic_ids)
    own = own_topics(doc_topics, topic_ids)
    kept_docs = own >= 0
    docs = np.asarray(doc_embeddings)
    nearest = NearestLabels(docs if kept_docs.all() else docs[kept_docs],
                            np.asarray(embed_labels([label.text for label in labels]), dtype=np.float32))
    own = own[kept_docs]
    current = agreement(nearest.best, own, k)
    before, scores_before = current.job, _scores(current)
    asked = flagged(current, threshold) if labeler is not None else []
    kept: list[int] = []
    answered: list[str | None] = []
    if asked:
        cut: Callable[[str, int], str] = getattr(labeler, "truncate", truncate_words)
        prompts = []
        for i in asked:
            rival = int(current.competitors[i])
            own_docs = [cut(doc, doc_budget) for doc in topics[i].documents[:doc_count]]
            rival_docs = [cut(doc, doc_budget) for doc in topics[rival].documents[:COMPETITOR_DOCS]]
            note = contrast_note(labels[i].text, labels[rival].text, rival_docs)
            prompts.append(build_messages(own_docs, topics[i].keywords, template, note=note, language=language))
        taken = {normalized(label.text) for label in labels}
        raw = labeler.generate(prompts)
        answered = [clean_label(answer) for answer in raw]
        answers = [text if text and normalized(text) not in taken else None for text in answered]
        fresh = [text for text in answers if text]
        fresh_vectors = dict(zip(fresh, np.asarray(embed_labels(fresh), dtype=np.float32))) if fresh else {}
        for i, text, prompt, answer in zip(asked, answers, prompts, raw):
            if not text or normalized(text) in taken:  # two re-asked topics may answer alike
                labels[i] = retried(labels[i], "unfaithful", prompt, answer, kept=False)
                continue
            trial = agreement(nearest.trial(i, fresh_vectors[text]), own, k)
            if trial.scores[i] > current.scores[i] and (trial.job or 0.0) >= (current.job or 0.0):
                taken.discard(normalized(labels[i].text))
                taken.add(normalized(text))
                nearest.replace(i, fresh_vectors[text])
                labels[i], current = retried(labels[i], "unfaithful", prompt, answer, True, text), trial
                kept.append(i)
            else:
                labels[i] = retried(labels[i], "unfaithful", prompt, answer, kept=False)
    return FaithfulLabels(labels, _scores(current), before, current.job, asked, kept, answered, scores_before)


def _scores(result: Faithfulness) -> list[float | None]:
    return [None if s != s else round(float(s), 4) for s in result.scores]
