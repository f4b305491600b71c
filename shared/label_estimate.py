"""What labelling costs on this service: the labels a finished label item made, the seconds per label of the label
work finished last (the job page's estimate) or within a window (/metrics' throughput), and a job's labelling
ahead of it. Functions take a session and never commit.

A label item covers a chunk of ``chunk_topics`` topics of its job; the item after a job's topic chunks labels its
themes, then its domains (``worker.stages``). Items of a batch across jobs are each charged their share of the
batch's time, so seconds per label stay fair whatever the batching.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.models import Job, WorkItem
from shared.work import ACTIVE_JOB

RECENT_ITEMS = 20  # label items the estimate's seconds per label is measured over: the newest finished


def labels_in_item(chunk: int, chunk_topics: int, topics: int | None, themes: int | None,
                   domains: int | None = None) -> int:
    """Labels that label item ``chunk`` of a job makes: its share of the job's ``topics``, or the ``themes`` and
    ``domains`` when it is the item after the topic chunks. ``topics`` None (a job from before the label plan was
    recorded, still labelling): a full chunk; ``themes`` None: its theme item is not counted; ``domains`` None (a
    plan from before domains were counted): none."""
    if topics is None:
        return chunk_topics
    first = chunk * chunk_topics
    if first < topics:
        return min(chunk_topics, topics - first)
    return (themes or 0) + (domains or 0)


@dataclass(frozen=True)
class LabelRate:
    labels: int  # labels the counted items made
    seconds: float  # the time those items took

    @property
    def seconds_per_label(self) -> float | None:
        return self.seconds / self.labels if self.labels else None

    @property
    def labels_per_second(self) -> float:
        return self.labels / self.seconds if self.seconds > 0 else 0.0


def label_rate(session: Session, chunk_topics: int, *, since: datetime | None = None,
               newest: int | None = None) -> LabelRate:
    """Labels made and seconds taken by the finished label items of every job: those finished at ``since`` or
    later, or the ``newest`` finished ones. Either way one bounded read along ``ix_work_items_stage_finished``."""
    query = (
        select(WorkItem.chunk, WorkItem.seconds, func.coalesce(Job.topics_to_label, Job.n_topics), Job.themes_to_label,
               Job.domains_to_label)
        .join(Job, Job.id == WorkItem.job_id)
        .where(WorkItem.stage == "label", WorkItem.status == "done", WorkItem.finished_at.is_not(None),
               WorkItem.seconds.is_not(None))
    )
    if since is not None:
        query = query.where(WorkItem.finished_at >= since)
    if newest is not None:
        query = query.order_by(WorkItem.finished_at.desc()).limit(newest)
    labels, seconds = 0, 0.0
    for chunk, took, topics, themes, domains in session.execute(query):
        made = labels_in_item(chunk, chunk_topics, topics, themes, domains)
        if made:  # an item that made no label we can count tells nothing about the time of one
            labels += made
            seconds += took
    return LabelRate(labels, seconds)


@dataclass(frozen=True)
class LabellingEstimate:
    topics: int  # topics the job's label stage labels
    themes: int  # and themes
    labels_left: int  # of all three, not made yet (counted by the job's finished label items)
    seconds_per_label: float | None  # over the newest finished label work of this service; None: none measured
    measured_labels: int  # labels that figure comes from (0: none)
    domains: int = 0  # and domains

    @property
    def expected_seconds(self) -> float | None:
        return None if self.seconds_per_label is None else round(self.labels_left * self.seconds_per_label, 1)

    @property
    def summary(self) -> str:
        """In words, as the job page shows it."""
        parts = [f"{count} {name}{'s' * (count != 1)}"
                 for count, name in ((self.topics, "topic"), (self.themes, "theme"), (self.domains, "domain")) if count]
        what = ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]
        left = f"{self.labels_left} label{'s' * (self.labels_left != 1)} left"
        if self.expected_seconds is None:
            return f"Labelling {what}: {left}; no label has been timed on this service yet, so no estimate."
        return (f"Labelling {what}: {left}, about {duration(self.expected_seconds)} ({self.seconds_per_label:.1f} s "
                f"a label over the last {self.measured_labels} labels on this service).")


def duration(seconds: float) -> str:
    """A rough duration: "40 s", "12 min", "2 h 5 min"."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 90 else f"{minutes // 60} h {minutes % 60} min"


def labelling_estimate(session: Session, job: Job, chunk_topics: int) -> LabellingEstimate | None:
    """The labelling ahead of ``job``: once clustering has recorded what to label, until the last label is made;
    None otherwise (before clustering, labels off, labelling over, the job finished)."""
    if job.status not in ACTIVE_JOB or job.topics_to_label is None:
        return None
    topics, themes, domains = job.topics_to_label, job.themes_to_label or 0, job.domains_to_label or 0
    done = session.scalars(select(WorkItem.chunk).where(WorkItem.job_id == job.id, WorkItem.stage == "label",
                                                        WorkItem.status == "done"))
    left = topics + themes + domains - sum(labels_in_item(chunk, chunk_topics, topics, themes, domains)
                                           for chunk in done)
    if left <= 0:
        return None
    rate = label_rate(session, chunk_topics, newest=RECENT_ITEMS)
    per_label = None if rate.seconds_per_label is None else round(rate.seconds_per_label, 3)
    return LabellingEstimate(topics, themes, left, per_label, rate.labels, domains)
