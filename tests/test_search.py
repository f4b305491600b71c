"""Full-text search of a job's documents on a real database (SQLite FTS5 and PostgreSQL's GIN index)."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import event, text, update

from shared import jobs, work
from shared.db import transaction
from shared.models import Job, WorkItem, utcnow
from shared.search import (
    MARK_END, MARK_START, SearchError, index_job, marked_segments, matching_indices, query_groups, search,
)

PETS = [
    ("The cat sleeps on the mat", None),
    ("A dog runs in the park every morning", "Morning walks"),
    ("Running shoes for a quick fox", None),
    ("The fox is quick and the dog is lazy", None),
    ("the cat and the dog share a bowl", None),
    ("A DOG SAT NEAR CAT", "Loud"),
    ("Nothing to see here", "Cats and kittens"),
]


def finished_job(sessions, documents: list[tuple[str, str | None]]) -> str:
    """A succeeded job of ``documents`` ``(text, title)``, written through jobs.create_job and jobs.finish."""
    with transaction(sessions) as session:
        job_id = jobs.create_job(session, name="search", documents=documents, params={}).id
        for stage in work.STAGES:
            work.add_item(session, job_id, stage)
        session.execute(update(WorkItem).where(WorkItem.job_id == job_id).values(status="done", seconds=1.0))
        session.execute(update(Job).where(Job.id == job_id).values(status="running", started_at=utcnow()))
    topics = np.zeros(len(documents), dtype=np.int32)
    with transaction(sessions) as session:
        assert jobs.finish(
            session, job_id,
            topics=[jobs.TopicRow(0, len(documents), "All", "llm", ["cat"], {"KeyBERT": [], "MMR": []}, [0])],
            arrays={"topic": topics, "topic_original": topics},
            n_outliers=0,
        )
    return job_id


def found(sessions, job_id: str, query: str, limit: int = 100, offset: int = 0) -> list[int]:
    with transaction(sessions) as session:
        return [hit.index for hit in search(session, job_id, query, limit, offset).hits]


@pytest.fixture
def pets(sessions) -> str:
    return finished_job(sessions, PETS)


def test_search_finds_a_word_in_text_or_title(sessions, pets):
    assert sorted(found(sessions, pets, "cat")) == [0, 4, 5, 6]  # 6 by its title "Cats and kittens"
    assert found(sessions, pets, "bowl") == [4]
    assert found(sessions, pets, "giraffe") == []


def test_search_stems_and_ignores_case(sessions, pets):
    assert sorted(found(sessions, pets, "running")) == [1, 2]  # "runs" and "Running"
    assert sorted(found(sessions, pets, "RUN")) == [1, 2]
    assert sorted(found(sessions, pets, "Dogs")) == [1, 3, 4, 5]


def test_every_word_must_match_and_a_quoted_phrase_keeps_its_order(sessions, pets):
    assert sorted(found(sessions, pets, "quick fox")) == [2, 3]
    assert found(sessions, pets, '"quick fox"') == [2]
    assert found(sessions, pets, '"fox quick"') == []
    assert found(sessions, pets, 'dog "quick fox"') == []


def test_hits_come_best_first_with_a_marked_snippet(sessions):
    job_id = finished_job(sessions, [("one mention of apple among many other words here", None),
                                     ("apple apple apple", None), ("no fruit", None), ("pear and apple", None)])
    with transaction(sessions) as session:
        page = search(session, job_id, "apples", limit=10, offset=0)
    assert page.total == 3
    assert [hit.index for hit in page.hits] == [1, 3, 0]  # most mentions, then the shorter document
    assert [hit.rank for hit in page.hits] == sorted((hit.rank for hit in page.hits), reverse=True)
    best = page.hits[0].snippet
    assert f"{MARK_START}apple{MARK_END}" in best and "<" not in best
    assert ("apple", True) in marked_segments(page.hits[2].snippet)
    assert "".join(part for part, _ in marked_segments(best)) == best.replace(MARK_START, "").replace(MARK_END, "")


def test_search_pages_with_ties_in_submission_order(sessions):
    job_id = finished_job(sessions, [(f"same words {i % 2 and 'here' or 'there'}", f"t{i}") for i in range(25)])
    with transaction(sessions) as session:
        first = search(session, job_id, "same words", limit=10, offset=0)
        last = search(session, job_id, "same words", limit=10, offset=20)
        beyond = search(session, job_id, "same words", limit=10, offset=30)
    assert first.total == last.total == beyond.total == 25
    assert [hit.index for hit in first.hits] == list(range(10))  # every document ranks the same
    assert [hit.index for hit in last.hits] == list(range(20, 25))
    assert [hit.title for hit in last.hits] == [f"t{i}" for i in range(20, 25)]
    assert beyond.hits == []


def test_search_sees_only_its_own_job(sessions, pets):
    other = finished_job(sessions, [("zebra crossing at night", None), ("a cat again", None)])
    assert found(sessions, pets, "zebra") == []
    assert found(sessions, other, "zebra") == [0]
    assert found(sessions, other, "cat") == [1]


@pytest.mark.parametrize("query, expected", [
    ("cat*", [0, 4, 5, 6]),  # no prefix query: "cat*" is the word "cat"
    ('"cat', [0, 4, 5, 6]),  # an unclosed quote runs to the end
    ("cat -dog", [4, 5]),  # "-" is no negation
    ("NEAR(cat dog)", [5]),  # the words "near cat" and "dog"
    ("dog: cat:", [4, 5]),
    ("title:cat", []),  # no column filter: the phrase "title cat"
    ("NEAR(", [5]),
])
def test_search_syntax_in_a_query_is_plain_text(sessions, pets, query, expected):
    assert sorted(found(sessions, pets, query)) == expected


def test_or_is_a_word_not_an_operator(sessions, pets):
    """SQLite looks for the word "or" too (no document has it); PostgreSQL drops it as a stop word."""
    assert set(found(sessions, pets, "cat OR dog")) <= {4, 5}


@pytest.mark.parametrize("query", ["", "   ", '""', "*", "- : ( )", '"*" -'])
def test_a_query_without_words_is_refused(sessions, pets, query):
    with transaction(sessions) as session:
        with pytest.raises(SearchError) as error:
            search(session, pets, query, 10, 0)
        with pytest.raises(SearchError):
            matching_indices(session, pets, query)
    assert str(error.value) and "\n" not in str(error.value)


def test_only_stop_words_are_refused_on_postgresql(sessions, pets):
    with transaction(sessions) as session:
        if session.get_bind().dialect.name != "postgresql":
            assert search(session, pets, "the and", 10, 0).total == 2  # SQLite indexes every word
            return
        with pytest.raises(SearchError, match="common words"):
            search(session, pets, "the and", 10, 0)


def test_matching_indices_are_ascending_and_capped(sessions):
    job_id = finished_job(sessions, [(("needle " if i % 3 == 0 else "") + f"hay {i}", None) for i in range(40)])
    with transaction(sessions) as session:
        assert matching_indices(session, job_id, "needles") == (list(range(0, 40, 3)), 14)
        assert matching_indices(session, job_id, "needle", cap=5) == ([0, 3, 6, 9, 12], 14)


def test_deleted_job_leaves_nothing_searchable(sessions, pets):
    other = finished_job(sessions, [("a cat too", None)])
    with transaction(sessions) as session:
        assert jobs.delete_job(session, pets)
    with transaction(sessions) as session:
        assert search(session, pets, "cat", 10, 0).total == 0
        assert found(sessions, other, "cat") == [0]
        if session.get_bind().dialect.name == "sqlite":
            rows = session.scalar(text("SELECT count(*) FROM document_search WHERE job_id = :j"), {"j": pets})
            assert rows == 0


def test_indexing_a_job_again_changes_nothing(sessions, pets):
    with transaction(sessions) as session:
        index_job(session, pets)
        index_job(session, pets)
    assert sorted(found(sessions, pets, "cat")) == [0, 4, 5, 6]


def test_query_groups_split_words_and_phrases():
    assert query_groups('  Running  "quick   fox" NEAR( - "unclosed phrase') == [
        "Running", "quick fox", "NEAR(", "unclosed phrase"]
    assert query_groups('*"": -') == []


@pytest.mark.postgres
def test_postgresql_search_uses_the_gin_index(sessions, database_url):
    """EXPLAIN of the very statements search() and matching_indices() run, on a few thousand documents."""
    if not database_url.startswith("postgresql"):
        pytest.skip("the GIN index is PostgreSQL's")
    job_id = finished_job(sessions, [(f"common filler words number {i}" + (" rare" if i == 77 else ""), None)
                                     for i in range(4000)])
    finished_job(sessions, [("another job with rare words", None)] * 50)
    ran = []
    with transaction(sessions) as session:
        session.execute(text("ANALYZE documents"))
        connection = session.connection()
        listen = lambda conn, cursor, statement, params, context, many: ran.append((statement, params))  # noqa: E731
        event.listen(connection, "before_cursor_execute", listen)
        assert search(session, job_id, "rare", 10, 0).total == 1
        assert matching_indices(session, job_id, "rare") == ([77], 1)
        event.remove(connection, "before_cursor_execute", listen)
        searches = [(statement, params) for statement, params in ran if "@@" in statement]
        assert len(searches) == 4
        for statement, params in searches:
            plan = "\n".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + statement, params))
            assert "ix_documents_search" in plan, plan
