"""The labelling estimate: labels counted per label item, the seconds per label of the newest finished label
work (one bounded, indexed read), a job's labels left, on SQLite and PostgreSQL; the API field and the page."""

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event, update

from shared import jobs, label_estimate, work
from shared.db import transaction
from shared.label_estimate import LabellingEstimate, duration, label_rate, labelling_estimate, labels_in_item
from shared.models import Job, WorkItem
from tests.factories import make_finished_job, make_job

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def test_a_label_item_makes_its_chunks_topics_or_the_themes_after_them():
    # 20 topics in chunks of 8 (8, 8, 4), then the theme item with 5 themes.
    assert [labels_in_item(c, 8, 20, 5) for c in range(4)] == [8, 8, 4, 5]
    assert labels_in_item(3, 8, 20, None) == 0  # a job without the plan recorded: its themes are not counted
    assert labels_in_item(5, 8, None, None) == 8  # topics unknown: a full chunk, as /metrics always counted
    # With 4 domains the last item makes the 5 theme labels and the 4 domain labels.
    assert [labels_in_item(c, 8, 20, 5, 4) for c in range(4)] == [8, 8, 4, 9]


def test_the_summary_gives_the_time_left_or_says_none_was_measured():
    timed = LabellingEstimate(topics=20, themes=5, labels_left=17, seconds_per_label=7.3, measured_labels=40)
    assert timed.expected_seconds == pytest.approx(124.1)
    assert timed.summary == ("Labelling 20 topics and 5 themes: 17 labels left, about 2 min "
                             "(7.3 s a label over the last 40 labels on this service).")
    with_domains = LabellingEstimate(topics=40, themes=9, labels_left=53, seconds_per_label=None, measured_labels=0,
                                     domains=4)
    assert with_domains.summary.startswith("Labelling 40 topics, 9 themes and 4 domains: 53 labels left;")
    untimed = LabellingEstimate(topics=1, themes=0, labels_left=1, seconds_per_label=None, measured_labels=0)
    assert untimed.expected_seconds is None
    assert untimed.summary == ("Labelling 1 topic: 1 label left; no label has been timed on this service yet, "
                               "so no estimate.")
    assert [duration(s) for s in (0.2, 40, 89, 600, 5300, 7500)] == ["1 s", "40 s", "89 s", "10 min", "88 min",
                                                                    "2 h 5 min"]


def clustered_job(sessions, topics: int, themes: int, domains: int = 0) -> str:
    """A running job whose clustering is done: it has ``topics`` topics, ``themes`` themes and ``domains`` domains
    to label."""
    job_id = make_job(sessions)
    with transaction(sessions) as session:
        session.execute(update(Job).where(Job.id == job_id).values(status="running", stage="labelling"))
        jobs.plan_labels(session, job_id, topics, themes, domains)
    return job_id


def finish_label_items(sessions, job_id: str, seconds: list[float], at: datetime, first_chunk: int = 0) -> None:
    """Label items ``first_chunk``.. of the job, done in ``seconds`` each, finished at ``at`` (a minute apart)."""
    with transaction(sessions) as session:
        for offset, took in enumerate(seconds):
            chunk = first_chunk + offset
            work.add_item(session, job_id, "label", chunk)
            session.execute(update(WorkItem).where(WorkItem.job_id == job_id, WorkItem.stage == "label",
                                                   WorkItem.chunk == chunk)
                            .values(status="done", seconds=took, finished_at=at + timedelta(minutes=offset)))


def estimate(sessions, job_id, chunk_topics=8):
    with sessions() as session:
        return labelling_estimate(session, jobs.get_job(session, job_id), chunk_topics)


def test_before_any_label_was_timed_the_estimate_says_so(sessions):
    job_id = clustered_job(sessions, topics=20, themes=5)
    result = estimate(sessions, job_id)
    assert (result.topics, result.themes, result.labels_left) == (20, 5, 25)
    assert result.seconds_per_label is None and result.expected_seconds is None and result.measured_labels == 0


def test_the_estimate_counts_down_the_jobs_labels_at_the_newest_measured_rate(sessions, monkeypatch):
    earlier = clustered_job(sessions, topics=12, themes=3)
    # Long ago a slow worker: 40 s a label; lately 2 s a label (16 topic labels in 32 s, 3 theme labels in 6 s).
    finish_label_items(sessions, earlier, [320.0], T0 - timedelta(days=1))
    finish_label_items(sessions, earlier, [8.0, 8.0], T0, first_chunk=1)  # chunk 1: 4 topics, chunk 2: 3 themes
    job_id = clustered_job(sessions, topics=20, themes=5)
    finish_label_items(sessions, job_id, [16.0], T0 + timedelta(hours=1))  # its own first chunk: 8 topics
    monkeypatch.setattr(label_estimate, "RECENT_ITEMS", 3)  # the old slow item falls out of the window

    result = estimate(sessions, job_id)
    assert result.labels_left == 17 and result.measured_labels == 4 + 3 + 8
    assert result.seconds_per_label == pytest.approx(32 / 15, abs=1e-3)
    assert result.expected_seconds == pytest.approx(17 * 32 / 15, abs=0.1)
    with sessions() as session:  # /metrics counts the same way, over its window
        since_then = label_rate(session, 8, since=T0 - timedelta(days=2))
    assert (since_then.labels, since_then.seconds) == (8 + 4 + 3 + 8, 352.0)


def test_the_domains_are_labels_left_until_the_last_item_made_them(sessions):
    job_id = clustered_job(sessions, topics=10, themes=4, domains=3)
    assert (estimate(sessions, job_id).labels_left, estimate(sessions, job_id).domains) == (17, 3)
    finish_label_items(sessions, job_id, [8.0, 2.0], T0)  # both topic chunks: 10 labels in 10 s
    assert estimate(sessions, job_id).labels_left == 7 and estimate(sessions, job_id).seconds_per_label == 1.0
    finish_label_items(sessions, job_id, [7.0], T0 + timedelta(minutes=5), first_chunk=2)  # themes and domains
    assert estimate(sessions, job_id) is None
    with sessions() as session:
        assert label_rate(session, 8, newest=3).labels == 17


def test_no_estimate_before_clustering_with_labels_off_or_once_labelled(sessions):
    assert estimate(sessions, make_job(sessions)) is None  # not clustered yet (or labels off: nothing planned)
    job_id = clustered_job(sessions, topics=3, themes=0)
    finish_label_items(sessions, job_id, [3.0], T0)
    assert estimate(sessions, job_id) is None  # its one chunk made all three labels
    assert estimate(sessions, make_finished_job(sessions)) is None


def test_the_newest_label_items_are_read_along_an_index(settings, sessions):
    """The statement label_rate sends, as SQLite plans it: along ix_work_items_stage_finished, no sort."""
    if not settings.sqlalchemy_url.startswith("sqlite"):
        pytest.skip("the plan is checked on SQLite; PostgreSQL's planner rightly scans a table this small")
    sent = []

    def record(conn, cursor, statement, parameters, context, executemany):
        sent.append((statement, parameters))

    with sessions() as session:
        engine = session.get_bind()
        event.listen(engine, "before_cursor_execute", record)
        label_rate(session, 8, newest=20)
        event.remove(engine, "before_cursor_execute", record)
        statement, parameters = sent[-1]
        plan = " ".join(str(row[-1]) for row in
                        session.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters))
    assert "ix_work_items_stage_finished" in plan and "TEMP B-TREE" not in plan, plan


def test_the_jobs_json_and_page_show_the_labelling_ahead(client, sessions):
    job_id = clustered_job(sessions, topics=20, themes=5)
    body = client.get(f"/api/v1/jobs/{job_id}").get_json()
    assert body["labelling"] == {
        "topics": 20, "themes": 5, "domains": 0, "labels_left": 25, "seconds_per_label": None, "measured_labels": 0,
        "expected_seconds": None,
        "summary": "Labelling 20 topics and 5 themes: 25 labels left; no label has been timed on this service yet, "
                   "so no estimate.",
    }
    finish_label_items(sessions, job_id, [20.0], T0)  # 8 labels in 20 s
    body = client.get(f"/api/v1/jobs/{job_id}").get_json()
    assert body["labelling"]["labels_left"] == 17 and body["labelling"]["seconds_per_label"] == 2.5
    assert body["labelling"]["expected_seconds"] == 42.5
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert ('<p id="labelling">Labelling 20 topics and 5 themes: 17 labels left, about 42 s '
            "(2.5 s a label over the last 8 labels on this service).</p>") in page
    queued = make_job(sessions)
    assert client.get(f"/api/v1/jobs/{queued}").get_json()["labelling"] is None
    assert '<p id="labelling" hidden></p>' in client.get(f"/jobs/{queued}").get_data(as_text=True)
