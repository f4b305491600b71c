"""Runs one topic merge: the merged topics' documents become one topic with representations fitted again and a
new LLM label; the job's topics, themes, topic arrays, model archive and static maps then show the new state."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from shared import jobs, label_runs, merges
from shared.db import transaction
from shared.prompts import MAIN_PROMPT
from shared.schemas import JobParams
from shared.storage import ArtifactStore, map_key, model_key
from worker import artifacts
from worker.heartbeat import Heartbeat
from worker.labeling.base import Labeler
from worker.pipeline.export import model_archive
from worker.pipeline.label import Label, LabelInput, label_topics
from worker.pipeline.merge import MergeError, MergeResult, TopicState, merge_topics, regroup_domains, regroup_themes
from worker.pipeline.static_map import render_map
from worker.stages import record_failure

log = logging.getLogger(__name__)

EDITED = "the job's topics were edited while the merge ran; merge them again"


@dataclass
class _Read:
    """What the merge read in its claiming transaction."""

    job_id: str
    merge: list[int]
    params: JobParams
    embedding_key: str | None
    texts: list[str]
    doc_topics: np.ndarray  # (n,) the "topic" array
    original: np.ndarray | None  # (n,) the "topic_original" array
    coords: np.ndarray | None  # (n, 2) the map
    states: list[TopicState]
    themes: list[jobs.ThemeRow]
    domains: list[jobs.DomainRow]
    scores: dict | None
    template: str  # the label prompt of the job's latest re-label run, else the default one


@dataclass
class MergeRunner:
    factory: sessionmaker[Session]
    store: ArtifactStore
    embedder: Callable[[], object]  # loaded once per process
    labeler: Callable[[], Labeler | None]  # loaded once per process
    embedding_model_ref: str  # written into the model archive, as the stage runner does
    doc_tokens: int
    doc_count: int = 3
    stale_after: timedelta = timedelta(minutes=1)
    heartbeat_seconds: float = 5.0
    seed: int = 42

    def run(self, merge_id: str) -> str:
        with transaction(self.factory) as session:
            if not merges.claim(session, merge_id, self.stale_after):
                return "skipped"
        fail = lambda session, message: merges.fail(session, merge_id, message)  # noqa: E731
        try:
            with transaction(self.factory) as session:
                read = _read(session, merges.get(session, merge_id))
            embeddings = artifacts.get_array(self.store, read.embedding_key) if read.embedding_key else None
            if embeddings is None or len(embeddings) != len(read.texts):
                with transaction(self.factory) as session:
                    fail(session, "this job's embeddings are no longer stored; run the job again to merge its topics")
                return "failed"
            with Heartbeat(self.factory, lambda session: merges.beat(session, merge_id), self.heartbeat_seconds):
                result = merge_topics(read.texts, embeddings, read.doc_topics, read.states, read.merge,
                                      self.embedder(), original_doc_topics=read.original, seed=self.seed)
                label = self._label(read, result)
                archive = model_archive(result.topic_model, self.embedding_model_ref)
            rows, custom, themes, domains = _rows(read, result, label)
        except MergeError as exc:  # the topics changed since the merge was asked for (or it was never valid)
            with transaction(self.factory) as session:
                fail(session, str(exc))
            return "failed"
        except Exception:
            return record_failure(self.factory, fail, log, f"topic merge {merge_id} failed")
        with transaction(self.factory) as session:
            custom_then = {s.topic: s.custom_label for s in read.states}
            if merges.edited_since(session, read.job_id, read.doc_topics, custom_then):
                fail(session, EDITED)
                return "failed"
            arrays = {"topic": result.doc_topics}
            if result.original_doc_topics is not None:
                arrays["topic_original"] = result.original_doc_topics
            scores = ((read.scores or {}) | result.scores.as_dict()) if result.scores else read.scores
            finished = merges.finish(session, merge_id, topics=rows, themes=themes, domains=domains, arrays=arrays,
                                     n_outliers=int((result.doc_topics < 0).sum()), result_topic=result.merged,
                                     custom_labels=custom, scores=scores)
        if not finished:
            return "skipped"
        # After the commit, so that a merge that did not finish never replaces the job's files.
        self.store.put(model_key(read.job_id), archive)
        self._static_maps(read, result, {r.topic: custom.get(r.topic) or r.label for r in rows})
        return "succeeded"

    def _label(self, read: _Read, result: MergeResult) -> Label:
        """The merged topic's label from the LLM (keywords when the job was run without labels), distinct from
        every other topic's labels, generated and custom."""
        merged = next(r for r in result.representations if r.topic == result.merged)
        docs = [read.texts[i] for i in merged.representative_docs]
        taken = [Label(text, s.label_source) for s in result.kept.values()
                 for text in (s.label, s.custom_label) if text]
        labeler = self.labeler() if read.params.generate_labels else None
        return label_topics([LabelInput(merged.keywords, docs)], labeler, doc_budget=self.doc_tokens,
                            doc_count=self.doc_count, template=read.template, earlier=taken,
                            language=read.params.label_language)[0]

    def _static_maps(self, read: _Read, result: MergeResult, labels: dict[int, str]) -> None:
        """The map as PNG and SVG with the labels shown now; a map that fails to render is logged and left as it was."""
        if read.coords is None:
            return
        try:
            for fmt in ("png", "svg"):
                self.store.put(map_key(read.job_id, fmt), render_map(read.coords, result.doc_topics, labels, fmt=fmt))
        except Exception:
            log.exception("job %s: the static map could not be rendered after a merge", read.job_id)


def _read(session: Session, merge) -> _Read:
    job = jobs.get_job(session, merge.job_id)
    x, y = jobs.load_array(session, job.id, "x"), jobs.load_array(session, job.id, "y")
    topics = jobs.topics_of(session, job.id)
    return _Read(
        job_id=job.id,
        merge=list(merge.topics),
        params=JobParams.model_validate(job.params),
        embedding_key=job.embedding_key,
        texts=jobs.load_documents(session, job.id),
        doc_topics=jobs.load_array(session, job.id, "topic").copy(),
        original=None if (o := jobs.load_array(session, job.id, "topic_original")) is None else o.copy(),
        coords=None if x is None or y is None else np.column_stack([x, y]).astype(np.float32),
        states=[TopicState(t.topic, t.label, t.label_source, t.custom_label, t.theme, t.provenance) for t in topics],
        themes=[jobs.ThemeRow(t.theme, t.label, t.label_source, list(t.topics), t.size, t.provenance, t.domain)
                for t in jobs.themes_of(session, job.id)],
        domains=[jobs.DomainRow(d.domain, d.label, d.label_source, list(d.themes), d.size, d.provenance)
                 for d in jobs.domains_of(session, job.id)],
        scores=dict(job.scores) if job.scores else None,
        template=next((r.prompt for r in label_runs.runs_of(session, job.id) if r.status == "succeeded"), None)
        or MAIN_PROMPT,
    )


def _rows(read: _Read, result: MergeResult, label: Label
          ) -> tuple[list[jobs.TopicRow], dict[int, str], list[jobs.ThemeRow], list[jobs.DomainRow]]:
    """The job's topic rows after the merge, their custom labels (new id -> label), its themes and its domains (a
    theme left without topics leaves its domain; a domain left without themes is dropped)."""
    rows, custom = [], {}
    for rep in result.representations:
        if rep.topic == result.merged:
            text, source, theme, provenance = label.text, label.source, result.merged_theme, label.provenance
        else:
            state = result.kept[rep.topic]
            text, source, theme, provenance = state.label, state.label_source, state.theme, state.provenance
            if state.custom_label:
                custom[rep.topic] = state.custom_label
        rows.append(jobs.TopicRow(
            topic=rep.topic, size=rep.size, label=text, label_source=source, keywords=rep.keywords,
            representations=rep.representations, representative_docs=rep.representative_docs, theme=theme,
            keyword_weights=rep.keyword_weights, provenance=provenance,
        ))
    grouped = regroup_themes([t.theme for t in read.themes], {r.topic: r.theme for r in rows},
                             {r.topic: r.size for r in rows})
    themes = [jobs.ThemeRow(t.theme, t.label, t.label_source, *grouped[t.theme], t.provenance, t.domain)
              for t in read.themes if t.theme in grouped]
    by_domain = regroup_domains([d.domain for d in read.domains], {t.theme: t.domain for t in themes},
                                {t.theme: t.size for t in themes})
    domains = [jobs.DomainRow(d.domain, d.label, d.label_source, *by_domain[d.domain], d.provenance)
               for d in read.domains if d.domain in by_domain]
    return rows, custom, themes, domains
