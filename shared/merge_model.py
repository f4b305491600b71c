"""The ORM row of a topic merge (``topic_merges``, migration 0008); shared/models.py imports it so that it is on
``Base.metadata``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from shared.models import Base, utcnow


class TopicMerge(Base):
    """Two or more topics of a finished job made one (``POST /api/v1/jobs/<id>/merges``).

    Like a re-label run, its state lives here and a queue message only carries its id: a worker re-fits the
    representations on the merged clusters, labels the merged topic and replaces the job's topics in one
    transaction. ``result_topic`` is the merged topic's id afterwards (topic ids run largest first, so the
    other topics' ids may change too).
    """

    __tablename__ = "topic_merges"
    # One merge at a time per job, held by the database itself (two requests at once: the second is refused).
    __table_args__ = (
        Index(
            "uq_topic_merges_one_active", "job_id", unique=True,
            sqlite_where=text("status IN ('queued', 'running')"),
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))  # queued, running, succeeded, failed
    topics: Mapped[list[int]] = mapped_column(JSON)  # the ids merged, as they were when it was asked for
    result_topic: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
