"""Reading a finished job's documents by index, with their titles (topic pages, search results)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.models import Document


@dataclass(frozen=True)
class DocumentText:
    index: int
    title: str | None
    text: str


def documents_at(session: Session, job_id: str, indices: Iterable[int]) -> dict[int, DocumentText]:
    """The documents of ``job_id`` at ``indices`` (missing indices are left out), by index."""
    wanted = sorted(set(indices))
    if not wanted:
        return {}
    rows = session.execute(
        select(Document.idx, Document.title, Document.text).where(Document.job_id == job_id, Document.idx.in_(wanted))
    )
    return {idx: DocumentText(idx, title, text) for idx, title, text in rows}
