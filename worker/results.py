"""A finished pipeline result as the rows ``jobs.finish`` stores: topics, themes, domains, scores, arrays."""

from __future__ import annotations

import numpy as np

from shared import jobs
from shared.schemas import JobParams
from worker.pipeline.run import PipelineResult


def result_rows(result: PipelineResult, params: JobParams) -> dict:
    """``jobs.finish`` keyword arguments for a pipeline result."""
    domain_of = {theme: d.domain for d in result.domains for theme in d.themes}
    return dict(
        topics=[to_row(t) for t in result.topics],
        themes=[jobs.ThemeRow(t.theme, t.label.text, t.label.source, t.topics, t.size, t.label.provenance,
                              domain_of.get(t.theme))
                for t in result.themes],
        domains=[jobs.DomainRow(d.domain, d.label.text, d.label.source, d.themes, d.size, d.label.provenance)
                 for d in result.domains],
        scores=job_scores(result, params),
        arrays={
            "topic": result.doc_topics.astype(np.int32),
            "topic_original": result.original_doc_topics.astype(np.int32),
            "x": result.coords[:, 0].astype(np.float32),
            "y": result.coords[:, 1].astype(np.float32),
        },
        n_outliers=result.n_outliers,
    )


def to_row(topic) -> jobs.TopicRow:
    rep = topic.representation
    return jobs.TopicRow(
        topic=rep.topic,
        size=rep.size,
        label=topic.label.text,
        label_source=topic.label.source,
        keywords=rep.keywords,
        representations=rep.representations,
        representative_docs=rep.representative_docs,
        theme=topic.theme,
        keyword_weights=rep.keyword_weights,
        faithfulness=topic.faithfulness,
        provenance=topic.label.provenance,
    )


def job_scores(result: PipelineResult, params: JobParams) -> dict:
    """What the job page and API show to compare runs: the scores, and which assignment they describe."""
    scores = result.scores.as_dict() if result.scores else {}
    before = float((result.original_doc_topics < 0).mean()) if len(result.original_doc_topics) else 0.0
    if result.faithful is not None and result.faithful.after is not None:
        scores |= {
            "label_faithfulness": round(result.faithful.after, 4),
            "label_faithfulness_before": round(result.faithful.before, 4),
            "labels_flagged": len(result.faithful.flagged),
            "labels_reasked_kept": len(result.faithful.kept),
        }
    scores |= {
        "assignment": "reduced" if params.reduce_outliers else "original",
        "outlier_share_before_reduction": round(before, 4),
        "outliers_reassigned": int(((result.original_doc_topics < 0) & (result.doc_topics >= 0)).sum()),
    }
    if result.outliers is not None:  # the threshold it ended at, and whether a max_outlier_share was met
        scores["outlier_threshold"] = round(result.outliers.threshold, 4)
        if result.outliers.target is not None:
            scores |= {"max_outlier_share": result.outliers.target, "outlier_target_met": result.outliers.met}
    return scores
