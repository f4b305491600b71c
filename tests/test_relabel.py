"""Re-labelling without re-clustering: the API and pages on a real database and queue, and the worker's
run on the stored topics (labels scripted here; the end-to-end test re-labels with the real LLM)."""

from shared import jobs, label_runs
from shared.queue import RELABEL
from tests.factories import drain_queue, make_finished_job, make_job
from tests.forms import post_form
from tests.test_api import assert_error
from worker.relabel import RelabelRunner


def queued_runs(settings) -> list[str]:
    return drain_queue(settings, RELABEL)


class Scripted:
    name = "scripted"

    def __init__(self):
        self.asked = []

    def generate(self, conversations, on_progress=None):
        self.asked += conversations
        return [f"New label {i}" for i in range(len(conversations))]


def test_relabel_is_queued_and_replaces_labels_keeping_the_old_ones(client, settings, sessions):
    job_id = make_finished_job(sessions, label="Old label")
    prompt = "Topic keywords: [KEYWORDS]. Documents:\n[DOCUMENTS]\nName it in three words."
    response = client.post(f"/api/v1/jobs/{job_id}/labels", json={"prompt": prompt})
    assert response.status_code == 202
    run = response.get_json()
    assert run["status"] == "queued" and run["prompt"] == prompt and run["job_id"] == job_id
    assert queued_runs(settings) == [run["id"]]
    assert_error(client.post(f"/api/v1/jobs/{job_id}/labels", json={}), 409, "relabel_in_progress")

    labeler = Scripted()
    runner = RelabelRunner(factory=sessions, labeler=lambda: labeler, doc_tokens=20)
    assert runner.run(run["id"]) == "succeeded"
    assert runner.run(run["id"]) == "skipped"  # a re-delivered message changes nothing
    main = labeler.asked[0][-1]["content"]
    assert main.startswith("Topic keywords: alpha, beta. Documents:\n- doc 1 text\n- doc 4 text\n")

    topics = client.get(f"/api/v1/jobs/{job_id}/topics").get_json()["topics"]
    assert [(t["label"], t["label_source"]) for t in topics] == [("New label 0", "llm"), ("New label 1", "llm")]
    # The new labels are not scored (the re-label worker has no embedding model): no stale figure is shown.
    assert [t["faithfulness"] for t in topics] == [None, None]
    # The new labels' prompts and answers replace the old ones'.
    provenance = client.get(f"/api/v1/jobs/{job_id}/provenance").get_json()["topics"]
    assert provenance[0]["provenance"]["messages"] == labeler.asked[0]
    assert provenance[0]["provenance"]["answer"] == "New label 0" and provenance[0]["label"] == "New label 0"
    scores = client.get(f"/api/v1/jobs/{job_id}").get_json()["scores"]
    assert "label_faithfulness" not in scores and scores["diversity"] == 1.0
    history = client.get(f"/api/v1/jobs/{job_id}/labels").get_json()["runs"]
    assert history[0]["status"] == "succeeded"
    assert history[0]["previous_labels"] == {
        "0": {"label": "Old label", "label_source": "llm"},
        "1": {"label": "Second", "label_source": "keywords"},
    }
    assert history[0]["labels"]["0"] == {"label": "New label 0", "label_source": "llm"}


def test_relabel_needs_a_succeeded_job_and_a_prompt_with_a_tag(client, sessions):
    assert_error(client.post(f"/api/v1/jobs/{make_job(sessions)}/labels", json={}), 409, "not_ready", "queued")
    job_id = make_finished_job(sessions)
    assert_error(client.post(f"/api/v1/jobs/{job_id}/labels", json={"prompt": "Name this topic."}), 400,
                 "invalid_prompt", "[KEYWORDS] or [DOCUMENTS]")
    assert_error(client.post(f"/api/v1/jobs/{job_id}/labels", json={"prompt": 5}), 400, "invalid_request", "prompt")
    assert_error(client.post("/api/v1/jobs/nope/labels", json={}), 404, "not_found")


def test_the_results_page_button_queues_a_relabel_with_the_default_prompt(client, settings, sessions):
    job_id = make_finished_job(sessions)
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "Re-label" in page and "[DOCUMENTS]" in page
    from shared.prompts import MAIN_PROMPT

    response = post_form(client, f"/jobs/{job_id}/labels", data={"prompt": MAIN_PROMPT.replace("\n", "\r\n")})
    assert response.status_code == 303
    with sessions() as session:
        (run,) = label_runs.runs_of(session, job_id)
        assert run.prompt is None and run.status == "queued"
    assert queued_runs(settings) == [run.id]
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert 'http-equiv="refresh"' in page and "queued" in page


def test_an_orphaned_relabel_is_requeued_and_a_late_finish_changes_nothing(settings, sessions, redis_client):
    from datetime import timedelta

    from sqlalchemy import update

    from cli.supervisor import sweep_once
    from shared.db import transaction
    from shared.models import LabelRun, utcnow

    job_id = make_finished_job(sessions, label="Keep me")
    with transaction(sessions) as session:
        run_id = label_runs.create_run(session, job_id, None).id
        assert label_runs.claim_run(session, run_id, timedelta(minutes=1))
        session.execute(update(LabelRun).values(heartbeat_at=utcnow() - timedelta(minutes=5)))
    assert sweep_once(settings, timedelta(minutes=1)).relabels == 1  # what `topicq recover` and the workers run
    assert queued_runs(settings) == [run_id]
    with transaction(sessions) as session:
        run = label_runs.get_run(session, run_id)
        assert run.status == "queued"
        assert not label_runs.finish_run(session, run, {0: ("Late", "llm"), 1: ("Late", "llm")})
    with sessions() as session:
        assert jobs.topics_of(session, job_id)[0].label == "Keep me"


def test_a_failing_relabel_keeps_the_labels(sessions):
    job_id = make_finished_job(sessions, label="Keep me")

    class Broken:
        def generate(self, conversations, on_progress=None):
            raise RuntimeError("out of memory")

    from shared.db import transaction

    with transaction(sessions) as session:
        run_id = label_runs.create_run(session, job_id, None).id
    assert RelabelRunner(factory=sessions, labeler=Broken, doc_tokens=20).run(run_id) == "failed"
    with sessions() as session:
        assert jobs.topics_of(session, job_id)[0].label == "Keep me"
        assert label_runs.get_run(session, run_id).status == "failed"
