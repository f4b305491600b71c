"""The levels above the topic labels, in the order a job makes them: the topic labels' faithfulness (the
unfaithful ones asked again), then one label per theme from its topics' labels, then one label per domain from
its themes' labels. Pure: the labeller, the scorer and the progress bar come in as arguments, so the one-process
pipeline and the worker's label stage run the same sequence."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from shared.prompts import DOMAIN_PROMPT, THEME_PROMPT
from worker.pipeline.label import Label, LabelInput, label_topics
from worker.pipeline.faithfulness import most_flagged
from worker.pipeline.progress import Progress, Ticker, no_progress
from worker.pipeline.reask import FaithfulLabels
from worker.pipeline.themes import groups

THEME_TOPICS = 20  # topics shown in a theme's label prompt, at most
DOMAIN_THEME_TOPICS = 3  # topics named under each theme in a domain's label prompt
REASK_SECONDS = 2.0  # what the progress bar expects a re-asked label to cost (a label on a CPU: 1-8 s)


def level_steps(n_topics: int, n_themes: int, n_domains: int, scored: bool = True) -> int:
    """The steps of a label stage's progress bar: one per topic label, as many for faithfulness as it may ask
    again (``scored``: the labels are scored), then one per theme and one per domain."""
    return n_topics + (most_flagged(n_topics) if scored else 0) + n_themes + n_domains


@dataclass(frozen=True)
class ThemeResult:
    theme: int
    label: Label
    topics: list[int]  # topic ids, largest first
    size: int  # documents in its topics


@dataclass(frozen=True)
class DomainResult:
    domain: int
    label: Label
    themes: list[int]  # theme ids, largest first
    size: int  # documents in its themes


def label_themes(representations, labels, theme_of: np.ndarray, labeler, progress: Progress,
                 language: str | None = None) -> list[ThemeResult]:
    """One label per theme, from the labels and keywords of its topics (one LLM prompt per theme), in
    ``language`` when given."""
    if not len(theme_of):
        return []
    members = [[i for i in range(len(theme_of)) if theme_of[i] == theme] for theme in range(groups(theme_of))]
    inputs = []
    for group in members:
        keywords = list(dict.fromkeys(w for i in group for w in representations[i].keywords[:5]))[:10]
        # The largest topics of the theme (ids run by size), so a prompt fits the LLM's context however many.
        lines = [f"{labels[i].text} ({', '.join(representations[i].keywords[:5])})" for i in group[:THEME_TOPICS]]
        inputs.append(LabelInput(keywords, lines))
    # A theme's label must not be one of its topics' labels (a theme is broader than any of them): a theme
    # answered with a topic's label is asked once more with the taken labels listed.
    theme_labels = label_topics(inputs, labeler, doc_budget=60, template=THEME_PROMPT, progress=progress,
                                earlier=labels, language=language)
    return [
        ThemeResult(theme, label, [representations[i].topic for i in group],
                    sum(representations[i].size for i in group))
        for theme, (label, group) in enumerate(zip(theme_labels, members))
    ]


def label_domains(themes: Sequence[ThemeResult], labels: Sequence[Label], representations, domain_of: np.ndarray,
                  labeler, progress: Progress, language: str | None = None) -> list[DomainResult]:
    """One label per domain (``domain_of``: (n_themes,) the domain of each theme of ``themes``), from its themes'
    labels, the labels of their largest topics and the domain's top keywords (one LLM prompt per domain), in
    ``language`` when given; a domain answering with a theme's or a topic's label is asked again."""
    if not len(domain_of) or not themes:
        return []
    index_of = {r.topic: i for i, r in enumerate(representations)}
    members = [[th for th in themes if domain_of[th.theme] == domain] for domain in range(groups(domain_of))]
    inputs = []
    for group in members:
        topics = [index_of[t] for th in group for t in th.topics]
        keywords = list(dict.fromkeys(w for i in topics for w in representations[i].keywords[:3]))[:10]
        named = [[labels[index_of[t]].text for t in th.topics[:DOMAIN_THEME_TOPICS]] for th in group]
        lines = [f"{th.label.text} (topics: {'; '.join(names)})" for th, names in zip(group, named)]
        inputs.append(LabelInput(keywords, lines))
    domain_labels = label_topics(inputs, labeler, doc_budget=60, template=DOMAIN_PROMPT, progress=progress,
                                 earlier=[*labels, *(th.label for th in themes)], language=language)
    return [DomainResult(domain, label, [th.theme for th in group], sum(th.size for th in group))
            for domain, (label, group) in enumerate(zip(domain_labels, members))]


@dataclass(frozen=True)
class Levels:
    labels: list[Label]  # the topic labels, with the re-asked ones that were kept
    faithful: FaithfulLabels | None  # None: not scored
    themes: list[ThemeResult]
    domains: list[DomainResult]


def label_levels(representations, labels: list[Label], theme_of: np.ndarray, domain_of: np.ndarray, labeler,
                 progress: Progress = no_progress, score: Callable[[list[Label]], FaithfulLabels | None] | None = None,
                 language: str | None = None, between: Callable[[], None] = lambda: None) -> Levels:
    """Faithfulness (``score``: the labels scored, unfaithful ones asked again; None, or a None answer: not
    scored), then themes, then domains, each in ``language`` when given. ``progress`` counts on from the topic
    labels, over ``level_steps``; ``between`` runs after each level (where a stage checks that its job still
    stands)."""
    n, reasks = len(labels), most_flagged(len(labels)) if score is not None else 0
    steps = level_steps(n, groups(theme_of), groups(domain_of), scored=score is not None)
    faithful = None
    if score is not None:
        # Scoring and the one batch of re-asks have no callback: the ticker moves the bar through their share.
        with Ticker(progress, "labelling", n, n + reasks, steps, expected_s=REASK_SECONDS * reasks):
            faithful = score(labels)
    if faithful is not None:
        labels = faithful.labels
    between()
    done_before = n + reasks
    themes = label_themes(representations, labels, theme_of, labeler, language=language,
                          progress=lambda stage, done, _total: progress(stage, done_before + done, steps))
    between()
    domains = label_domains(themes, labels, representations, domain_of, labeler, language=language,
                            progress=lambda stage, done, _total: progress(stage, done_before + len(themes) + done,
                                                                          steps))
    return Levels(labels, faithful, themes, domains)
