"""A user's edits to a finished job (renaming topics, moving documents) on a real database."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from shared import jobs
from shared.db import transaction
from shared.edits import MAX_LABEL, EditError, documents_of_topic, move_document, rename_topic
from shared.models import Topic
from tests.factories import make_finished_job

# make_finished_job's 30 documents: document i is in topic i % 3 - 1 (-1, 0, 1), so 10 in each and 10 outliers.


def state(sessions, job_id: str) -> tuple[np.ndarray, np.ndarray, dict[int, int], int]:
    """The "topic" and "topic_original" arrays, the topics' sizes and the job's n_outliers, as stored."""
    with transaction(sessions) as session:
        sizes = {t.topic: t.size for t in jobs.topics_of(session, job_id)}
        return (jobs.load_array(session, job_id, "topic"), jobs.load_array(session, job_id, "topic_original"), sizes,
                jobs.get_job(session, job_id).n_outliers)


def test_rename_shows_the_users_label_and_a_blank_one_resets_it(sessions):
    job_id = make_finished_job(sessions, label="Generated")
    with transaction(sessions) as session:
        topic = rename_topic(session, job_id, 0, "  Billing \n\t and   refunds ")
        assert topic.custom_label == "Billing and refunds"
    with transaction(sessions) as session:
        stored = session.get(Topic, (job_id, 0))
        assert (stored.shown_label, stored.shown_source, stored.label) == ("Billing and refunds", "custom", "Generated")
        assert session.get(Topic, (job_id, 1)).custom_label is None
    for reset in (None, "", "   "):
        with transaction(sessions) as session:
            rename_topic(session, job_id, 0, "Something")
        with transaction(sessions) as session:
            rename_topic(session, job_id, 0, reset)
        with transaction(sessions) as session:
            stored = session.get(Topic, (job_id, 0))
            assert (stored.custom_label, stored.shown_label, stored.shown_source) == (None, "Generated", "llm")


def test_rename_refuses_a_label_too_long_and_an_unknown_topic(sessions):
    job_id = make_finished_job(sessions)
    with transaction(sessions) as session:
        assert rename_topic(session, job_id, 1, "x" * MAX_LABEL).custom_label == "x" * MAX_LABEL
        with pytest.raises(EditError, match=f"at most {MAX_LABEL}") as too_long:
            rename_topic(session, job_id, 1, "x" * (MAX_LABEL + 1))
        assert too_long.value.code == "invalid_label"
        for topic in (-1, 2, 99):
            with pytest.raises(EditError, match=f"no topic {topic}") as unknown:
                rename_topic(session, job_id, topic, "Name")
            assert unknown.value.code == "not_found"
        with pytest.raises(EditError):
            rename_topic(session, "no-such-job", 0, "Name")
    with transaction(sessions) as session:
        assert session.get(Topic, (job_id, 1)).custom_label == "x" * MAX_LABEL  # the refused rename changed nothing


def test_move_updates_the_array_sizes_and_outliers(sessions):
    job_id = make_finished_job(sessions)
    before, original, sizes, outliers = state(sessions, job_id)
    assert (sizes, outliers) == ({0: 10, 1: 10}, 10)
    with transaction(sessions) as session:
        assert move_document(session, job_id, 1, 1) == 0  # document 1 was in topic 0
        assert move_document(session, job_id, 0, 0) == -1  # an outlier joins topic 0
        assert move_document(session, job_id, 2, -1) == 1  # and one leaves topic 1
    after, original_after, sizes, outliers = state(sessions, job_id)
    assert after.dtype == before.dtype and len(after) == len(before)
    assert after[:3].tolist() == [0, 1, -1] and after[3:].tolist() == before[3:].tolist()
    assert (sizes, outliers) == ({0: 10, 1: 10}, 10)
    with transaction(sessions) as session:
        move_document(session, job_id, 3, 0)  # an outlier more in topic 0
    _, _, sizes, outliers = state(sessions, job_id)
    assert (sizes, outliers) == ({0: 11, 1: 10}, 9)
    assert original_after.tolist() == original.tolist()  # the pipeline's own assignment stays


def test_moving_a_document_to_its_own_topic_changes_nothing(sessions):
    job_id = make_finished_job(sessions)
    before = state(sessions, job_id)
    with transaction(sessions) as session:
        assert move_document(session, job_id, 4, 0) == 0
        assert move_document(session, job_id, 0, -1) == -1
    after = state(sessions, job_id)
    assert after[0].tolist() == before[0].tolist() and after[2:] == before[2:]


def test_move_refuses_an_unknown_topic_or_document(sessions):
    job_id = make_finished_job(sessions)
    before = state(sessions, job_id)
    with transaction(sessions) as session:
        for index, topic, message in [(0, 5, "no topic 5"), (0, -2, "no topic -2"), (30, 0, "no document 30"),
                                      (-1, 0, "no document -1")]:
            with pytest.raises(EditError, match=message) as error:
                move_document(session, job_id, index, topic)
            assert error.value.code == "not_found"
        with pytest.raises(EditError) as error:
            move_document(session, jobs.create_job(session, name=None, documents=[("a", None)], params={}).id, 0, 0)
        assert error.value.code == "not_ready"  # a job without results
    after = state(sessions, job_id)
    assert after[0].tolist() == before[0].tolist() and after[2:] == before[2:]


def test_two_moves_at_once_both_count(sessions):
    """The second move waits for the first one's transaction, then moves from what it committed."""
    job_id = make_finished_job(sessions)
    second_done = threading.Event()
    errors = []

    def second_move():
        try:
            with transaction(sessions) as session:
                move_document(session, job_id, 4, 1)  # topic 0 -> 1
            second_done.set()
        except Exception as exc:  # noqa: BLE001 - reported below, in the test's thread
            errors.append(exc)

    with transaction(sessions) as session:
        move_document(session, job_id, 1, 1)  # topic 0 -> 1, not committed yet
        thread = threading.Thread(target=second_move)
        thread.start()
        assert not second_done.wait(1.0)  # it waits for this transaction's lock
    thread.join(timeout=30)
    assert not errors and second_done.is_set()
    topics, _, sizes, outliers = state(sessions, job_id)
    assert topics[[1, 4]].tolist() == [1, 1]
    assert (sizes, outliers) == ({0: 8, 1: 12}, 10)


def test_documents_of_a_topic_page_in_submission_order(sessions):
    job_id = make_finished_job(sessions)
    with transaction(sessions) as session:
        assert documents_of_topic(session, job_id, 0, limit=4, offset=0) == ([1, 4, 7, 10], 10)
        assert documents_of_topic(session, job_id, 0, limit=4, offset=8) == ([25, 28], 10)
        assert documents_of_topic(session, job_id, 0, limit=4, offset=12) == ([], 10)
        assert documents_of_topic(session, job_id, -1, limit=3, offset=0) == ([0, 3, 6], 10)
        move_document(session, job_id, 0, 0)
        assert documents_of_topic(session, job_id, 0, limit=3, offset=0) == ([0, 1, 4], 11)
        with pytest.raises(EditError, match="no topic 7"):
            documents_of_topic(session, job_id, 7, limit=3, offset=0)
