"""Full-text search of a finished job's documents, one interface over SQLite (FTS5) and PostgreSQL (GIN).

A user's query is never passed as search syntax: it is split into words and "quoted phrases", and every one of
them must match (AND), stemmed (porter on SQLite, english on PostgreSQL) and case-insensitively. The schema is
migration 0006's: on SQLite the FTS5 table ``document_search`` that :func:`index_job` fills when a job succeeds,
on PostgreSQL a GIN index on :data:`PG_VECTOR`, kept by PostgreSQL itself.

Snippets mark the matched words with :data:`MARK_START` and :data:`MARK_END` (private-use characters, never
HTML): the caller escapes the snippet and turns the marks into ``<mark>`` (see :func:`marked_segments`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

MARK_START = "\ue000"
MARK_END = "\ue001"
ELLIPSIS = "…"
SNIPPET_WORDS = 24
_NOTHING_TO_SEARCH = "the query has no word to search for"

# Must stay the exact expression of the GIN index ix_documents_search (migration 0006), or PostgreSQL ignores it.
PG_VECTOR = "to_tsvector('english', coalesce(title, '') || ' ' || text)"

_GROUP = re.compile(r'"([^"]*)(?:"|$)|([^\s"]+)')  # a "quoted phrase" (an unclosed quote runs to the end) or a word
_TOKEN = re.compile(r"[^\W_]")  # a letter or digit: what unicode61 and PostgreSQL's parser keep as part of a word


class SearchError(ValueError):
    """A query with nothing to search for; the message is one line, fit to show to the user."""


@dataclass(frozen=True)
class SearchHit:
    index: int  # the document's position in the job, from 0
    title: str | None
    snippet: str  # an excerpt of the text around the match, matched words between MARK_START and MARK_END
    rank: float  # relevance, higher is better (SQLite: -bm25; PostgreSQL: ts_rank over 1 + log length); one search only


@dataclass(frozen=True)
class SearchPage:
    total: int  # documents of the job that match
    hits: list[SearchHit]  # best first, ties by index


def query_groups(query: str) -> list[str]:
    """The words and quoted phrases of a user's query that hold something searchable, in order."""
    groups = (match.group(1) if match.group(1) is not None else match.group(2) for match in _GROUP.finditer(query))
    return [" ".join(group.split()) for group in groups if _TOKEN.search(group)]


def marked_segments(snippet: str) -> list[tuple[str, bool]]:
    """A snippet as ``(text, matched)`` pieces, for a caller that escapes each piece and wraps the matched ones."""
    pieces = []
    for number, part in enumerate(re.split(f"[{MARK_START}{MARK_END}]", snippet)):
        if part:
            pieces.append((part, number % 2 == 1))
    return pieces


def index_job(session: Session, job_id: str) -> None:
    """Make a job's documents searchable (SQLite: refill its rows of ``document_search``; PostgreSQL: nothing)."""
    if _dialect(session) != "sqlite":
        return
    unindex_job(session, job_id)
    session.execute(
        text(
            "INSERT INTO document_search (text, title, job_id, idx) "
            "SELECT text, coalesce(title, ''), job_id, idx FROM documents WHERE job_id = :job_id"
        ),
        {"job_id": job_id},
    )


def unindex_job(session: Session, job_id: str) -> None:
    """Remove a job's documents from the search table (SQLite; PostgreSQL's index follows the documents)."""
    if _dialect(session) == "sqlite":
        session.execute(text("DELETE FROM document_search WHERE job_id = :job_id"), {"job_id": job_id})


def search(session: Session, job_id: str, query: str, limit: int, offset: int = 0) -> SearchPage:
    """The job's documents that match ``query``: ``limit`` of them from ``offset``, best first, and how many match.

    Raises SearchError when the query has no searchable word (empty, only punctuation, or on PostgreSQL only
    stop words such as "the"). Meant for succeeded jobs (the caller checks): SQLite indexes a job when it
    succeeds, PostgreSQL searches any job's documents. The snippet comes from the text, not the title.
    """
    if _dialect(session) == "sqlite":
        match = _fts5_query(query)
        params = {"job_id": job_id, "match": match, "limit": limit, "offset": offset}
        total = session.scalar(
            text("SELECT count(*) FROM document_search WHERE document_search MATCH :match AND job_id = :job_id"),
            params,
        )
        rows = session.execute(
            text(
                "SELECT idx, title, snippet(document_search, 0, :start, :end, :ellipsis, :words), "
                "-bm25(document_search) FROM document_search "
                "WHERE document_search MATCH :match AND job_id = :job_id "
                "ORDER BY bm25(document_search), idx LIMIT :limit OFFSET :offset"
            ),
            {**params, "start": MARK_START, "end": MARK_END, "ellipsis": ELLIPSIS, "words": SNIPPET_WORDS},
        )
    else:
        params = {"job_id": job_id, "query": _websearch_query(session, query), "limit": limit, "offset": offset}
        total = session.scalar(
            text(
                "SELECT count(*) FROM documents WHERE job_id = :job_id "
                f"AND {PG_VECTOR} @@ websearch_to_tsquery('english', :query)"
            ),
            params,
        )
        # The headline is computed in the outer query so only the page's documents are parsed for it.
        rows = session.execute(
            text(
                "SELECT page.idx, d.title, ts_headline('english', d.text, websearch_to_tsquery('english', :query), "
                ":options), page.rank FROM ("
                f"SELECT idx, ts_rank({PG_VECTOR}, websearch_to_tsquery('english', :query), 1) AS rank "
                f"FROM documents WHERE job_id = :job_id AND {PG_VECTOR} @@ websearch_to_tsquery('english', :query) "
                "ORDER BY rank DESC, idx LIMIT :limit OFFSET :offset"
                ") AS page JOIN documents AS d ON d.job_id = :job_id AND d.idx = page.idx "
                "ORDER BY page.rank DESC, page.idx"
            ),
            {**params, "options": _headline_options()},
        )
    hits = [SearchHit(index=int(idx), title=title or None, snippet=snippet, rank=float(rank))
            for idx, title, snippet, rank in rows]
    return SearchPage(total=int(total or 0), hits=hits)


def matching_indices(session: Session, job_id: str, query: str, cap: int = 100_000) -> tuple[list[int], int]:
    """The indices of the job's documents that match ``query``, ascending, at most ``cap`` of them, and how many
    match in all (for the map's highlight). Raises SearchError as :func:`search` does."""
    if _dialect(session) == "sqlite":
        params = {"job_id": job_id, "match": _fts5_query(query), "cap": cap}
        where = "FROM document_search WHERE document_search MATCH :match AND job_id = :job_id"
    else:
        params = {"job_id": job_id, "query": _websearch_query(session, query), "cap": cap}
        where = f"FROM documents WHERE job_id = :job_id AND {PG_VECTOR} @@ websearch_to_tsquery('english', :query)"
    total = session.scalar(text(f"SELECT count(*) {where}"), params)
    indices = session.scalars(text(f"SELECT idx {where} ORDER BY idx LIMIT :cap"), params)
    return [int(i) for i in indices], int(total or 0)


def _fts5_query(query: str) -> str:
    """Each word or phrase as an FTS5 string (so nothing the user typed is an operator), ANDed."""
    groups = query_groups(query)
    if not groups:
        raise SearchError(_NOTHING_TO_SEARCH)
    return " AND ".join(f'"{group}"' for group in groups)  # groups hold no '"': they are split on them


def _websearch_query(session: Session, query: str) -> str:
    """Each word or phrase quoted for websearch_to_tsquery, so "or" and "-" are words, not operators."""
    groups = query_groups(query)
    if not groups:
        raise SearchError(_NOTHING_TO_SEARCH)
    quoted = " ".join(f'"{group}"' for group in groups)
    if not session.scalar(text("SELECT numnode(websearch_to_tsquery('english', :query))"), {"query": quoted}):
        raise SearchError("the query has only common words (such as 'the' or 'and'), which are not indexed")
    return quoted


def _headline_options() -> str:
    return (f'StartSel="{MARK_START}", StopSel="{MARK_END}", MaxWords={SNIPPET_WORDS}, MinWords={SNIPPET_WORDS // 2}, '
            f'MaxFragments=1, FragmentDelimiter=" {ELLIPSIS} "')


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name

