"""Stage 5: one short LLM label per topic, from its representative documents and keywords."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from shared.prompts import MAIN_PROMPT, build_messages, clean_label, keyword_label, normalized, truncate_words, with_keyword
from worker.labeling.base import Labeler, describe
from worker.pipeline.progress import Progress, no_progress


@dataclass(frozen=True)
class LabelInput:
    keywords: list[str]  # top c-TF-IDF words, best first
    documents: list[str]  # representative documents, best first


@dataclass(frozen=True)
class Label:
    text: str
    source: str  # "llm", or "keywords" when the LLM was off or gave nothing usable
    # How the LLM came to it (None without an LLM): {"labeler": describe(...), "messages": the conversation sent,
    # "answer": the raw answer, "retries": [{"reason", "messages", "answer", "kept"}, ...]}
    provenance: dict | None = None


def asked(labeler: Labeler, messages: list[dict[str, str]], answer: str, doc_budget: int,
          doc_count: int | None) -> dict:
    """A label's provenance after its first prompt: the labeller, its settings, the conversation and the answer."""
    who = describe(labeler)
    who["settings"] = who["settings"] | {"doc_tokens": doc_budget, "doc_count": doc_count}
    return {"labeler": who, "messages": messages, "answer": answer, "retries": []}


def retried(label: Label, reason: str, messages: list[dict[str, str]], answer: str, kept: bool,
            text: str | None = None, source: str = "llm") -> Label:
    """``label`` with one more prompt and answer in its provenance; with ``text`` (kept) the new label."""
    provenance = dict(label.provenance or {"retries": []})
    provenance["retries"] = [*provenance.get("retries", []),
                             {"reason": reason, "messages": messages, "answer": answer, "kept": kept}]
    if kept and text is not None:
        return Label(text, source, provenance)
    return replace(label, provenance=provenance)


@dataclass(frozen=True)
class LabelRequest:
    """One job's share of a label batch: its topics, and the labels its earlier chunks already gave."""

    topics: Sequence[LabelInput]
    earlier: Sequence[Label] = ()  # the new labels must differ from these too
    template: str = MAIN_PROMPT
    progress: Progress = no_progress
    language: str | None = None  # the job's label_language


def label_topics(
    topics: Sequence[LabelInput],
    labeler: Labeler | None,
    *,
    doc_budget: int,
    doc_count: int | None = None,
    template: str = MAIN_PROMPT,
    progress: Progress = no_progress,
    earlier: Sequence[Label] = (),
    language: str | None = None,
) -> list[Label]:
    """A distinct label per topic, in order (the first, largest topics keep a contested label).

    The first ``doc_count`` representative documents (all: None) go into the prompt, each cut to ``doc_budget``
    tokens (words, for a labeler without a tokenizer). ``language``: the language every label is asked in.
    A topic whose label another topic (or one of ``earlier``) already has is asked once more with the taken
    labels listed; a clash that remains is settled with the topic's most distinctive keyword.
    """
    request = LabelRequest(topics, earlier, template, progress, language)
    return label_batch([request], labeler, doc_budget=doc_budget, doc_count=doc_count)[0]


def label_batch(
    requests: Sequence[LabelRequest], labeler: Labeler | None, *, doc_budget: int, doc_count: int | None = None
) -> list[list[Label]]:
    """``label_topics`` for several jobs at once: their prompts go to the labeler as one batch (one shared
    prefix, one generate call), and each job's labels are made distinct within that job only."""
    if labeler is None:
        return [_distinct([Label(keyword_label(t.keywords), "keywords") for t in r.topics], r.topics, r.earlier)
                for r in requests]
    cut: Callable[[str, int], str] = getattr(labeler, "truncate", truncate_words)
    docs = [[[cut(doc, doc_budget) for doc in t.documents[:doc_count]] for t in r.topics] for r in requests]
    starts = [sum(len(r.topics) for r in requests[:k]) for k in range(len(requests))]
    for r in requests:
        r.progress("labelling", 0, len(r.topics))

    def on_progress(done: int) -> None:
        for r, start in zip(requests, starts):
            if start < done <= start + len(r.topics):  # this job's topics are the ones being answered
                r.progress("labelling", done - start, len(r.topics))

    prompts = [build_messages(d, t.keywords, r.template, language=r.language)
               for r, ds in zip(requests, docs) for d, t in zip(ds, r.topics)]
    answers = labeler.generate(prompts, on_progress=on_progress)
    labels = [[replace(_label(answers[start + i], t),
                       provenance=asked(labeler, prompts[start + i], answers[start + i], doc_budget, doc_count))
               for i, t in enumerate(r.topics)] for r, start in zip(requests, starts)]

    # Topics whose label an earlier topic of the same job has: asked once more, all jobs in one batch.
    retry_of: list[tuple[int, int]] = []
    retry_prompts = []
    for k, r in enumerate(requests):
        clashes = _clashing(labels[k], r.earlier)
        taken = sorted({labels[k][i].text for i in clashes})  # the labels to avoid (a full list could overflow 4k)
        for i in clashes:
            retry_of.append((k, i))
            retry_prompts.append(build_messages(docs[k][i], r.topics[i].keywords, r.template, taken=taken,
                                                language=r.language))
    if retry_prompts:
        used = [{normalized(label.text) for label in [*r.earlier, *labels[k]]} for k, r in enumerate(requests)]
        for (k, i), prompt, answer in zip(retry_of, retry_prompts, labeler.generate(retry_prompts)):
            retry = _label(answer, requests[k].topics[i])
            kept = retry.source == "llm" and normalized(retry.text) not in used[k]
            labels[k][i] = retried(labels[k][i], "label taken", prompt, answer, kept, retry.text)
            if kept:
                used[k].add(normalized(retry.text))
    return [_distinct(labels[k], r.topics, r.earlier) for k, r in enumerate(requests)]


def _label(answer: str, topic: LabelInput) -> Label:
    cleaned = clean_label(answer)
    return Label(cleaned, "llm") if cleaned else Label(keyword_label(topic.keywords), "keywords")


def _clashing(labels: Sequence[Label], earlier: Sequence[Label] = ()) -> list[int]:
    """Indices of labels an earlier topic (or one of ``earlier``) already has."""
    seen: set[str] = {normalized(label.text) for label in earlier}
    clashes = []
    for i, label in enumerate(labels):
        key = normalized(label.text)
        if key in seen:
            clashes.append(i)
        seen.add(key)
    return clashes


def _distinct(labels: list[Label], topics: Sequence[LabelInput], earlier: Sequence[Label] = ()) -> list[Label]:
    taken = {normalized(label.text) for label in [*earlier, *labels]}
    for i in _clashing(labels, earlier):
        text = with_keyword(labels[i].text, topics[i].keywords, taken)
        taken.add(normalized(text))
        labels[i] = replace(labels[i], text=text)
    return labels
