"""The HTML pages, on a real database and queue."""

import re

from sqlalchemy import update

from shared import work
from shared.db import transaction
from shared.models import Job, Topic
from tests.factories import make_finished_job, make_job
from tests.forms import post_form

DOCS = "\n".join(f"document {i} about gardening and tomatoes" for i in range(8))


def test_form_submission_lands_on_the_job_page(client):
    response = post_form(client, "/jobs", data={"text": DOCS, "name": "garden", "generate_labels": ["false", "true"],
                                                 "nr_topics": ""})
    assert response.status_code == 303
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "garden" in page and "8 documents" in page
    assert 'id="bar"' in page and "queued" in page


def test_the_form_takes_a_priority_and_refuses_one_out_of_range(client):
    response = post_form(client, "/jobs", data={"text": DOCS, "priority": "4"})
    assert response.status_code == 303
    assert "priority 4" in client.get(response.headers["Location"]).get_data(as_text=True)
    response = post_form(client, "/jobs", data={"text": DOCS, "priority": "11"})
    assert response.status_code == 400
    assert "priority: Input should be less than or equal to 10" in response.get_data(as_text=True)


def test_the_form_takes_a_label_language_and_refuses_one_that_is_no_name(client, sessions):
    response = post_form(client, "/jobs", data={"text": DOCS, "label_language": " Français "})
    assert response.status_code == 303
    assert "labels in Français" in client.get(response.headers["Location"]).get_data(as_text=True)
    response = post_form(client, "/jobs", data={"text": DOCS, "label_language": "French</b><i>"})
    assert response.status_code == 400
    assert "label_language: String should match pattern" in response.get_data(as_text=True)


def test_the_form_takes_a_target_share_of_outliers_and_refuses_one_out_of_range(client):
    form = client.get("/").get_data(as_text=True)
    assert 'name="max_outlier_share" type="number" min="0" max="0.99"' in form
    response = post_form(client, "/jobs", data={"text": DOCS, "max_outlier_share": "0.05"})
    assert response.status_code == 303
    assert client.get(response.headers["Location"].replace("/jobs/", "/api/v1/jobs/")).get_json()[
        "params"]["max_outlier_share"] == 0.05
    response = post_form(client, "/jobs", data={"text": DOCS, "max_outlier_share": "5"})
    assert response.status_code == 400
    assert "max_outlier_share: Input should be less than 1" in response.get_data(as_text=True)


def test_a_pasted_corpus_larger_than_flasks_form_default_is_accepted(client, sessions):
    big = "\n".join(f"document {i} " + "word " * 120 for i in range(1200))  # about 750 kB
    response = post_form(client, "/jobs", data={"text": big})
    assert response.status_code == 303


def test_form_errors_are_shown_on_the_form(client):
    response = post_form(client, "/jobs", data={"text": "too\nfew"})
    assert response.status_code == 400
    assert "a job needs at least 5 non-empty documents, got 2" in response.get_data(as_text=True)
    response = post_form(client, "/jobs", data={"text": DOCS, "min_topic_size": "1"})
    assert response.status_code == 400
    assert "min_topic_size" in response.get_data(as_text=True)


def test_results_page_escapes_what_the_llm_wrote(client, sessions):
    job_id = make_finished_job(sessions, label="<script>alert(1)</script> Topic")
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Topic" in page
    assert "2 topics" in page and "10 outliers" in page
    assert "Themes" in page and "Everything" in page and "coherence (NPMI) 0.250" in page
    assert "36.7% before 1" in page
    assert f"/api/v1/jobs/{job_id}/topics.csv" in page


def test_a_job_with_domains_shows_them_as_headings_above_their_themes(client, sessions):
    page = client.get(f"/jobs/{make_finished_job(sessions)}").get_data(as_text=True)
    assert "<h2>Themes</h2>" in page and 'class="domain"' not in page
    job_id = make_finished_job(sessions, domain="Knowledge & <b>culture</b>")
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "<b>culture</b>" not in page and "Knowledge &amp; &lt;b&gt;culture&lt;/b&gt;" in page
    heading, below = page.split('<h3 class="domain">', 1)
    assert "Domains and themes" in heading and "Everything" not in heading.split("Domains and themes")[1]
    assert "20 documents, 1 theme<" in below.split("</h3>")[0] and "Everything" in below.split("</h3>")[1]
    topic_page = client.get(f"/jobs/{job_id}/topics/0").get_data(as_text=True)
    assert "domain <strong>Knowledge &amp; &lt;b&gt;culture&lt;/b&gt;</strong>" in topic_page


def test_the_results_page_says_what_threshold_a_target_share_of_outliers_needed(client, sessions):
    job_id = make_finished_job(sessions)
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "outlier-target" not in page  # no target asked for
    with transaction(sessions) as session:
        scores = session.get(Job, job_id).scores
        session.execute(update(Job).where(Job.id == job_id).values(scores=scores | {
            "outlier_threshold": 0.1834, "max_outlier_share": 0.05, "outlier_target_met": True}))
    page = " ".join(client.get(f"/jobs/{job_id}").get_data(as_text=True).split())
    assert "outliers joined their nearest topic at a cosine of 0.183 or more" in page
    assert "target: at most 5.0% outliers, met by lowering the threshold from 0.3" in page


def test_index_lists_jobs_and_the_job_page_can_cancel(client, sessions):
    job_id = make_job(sessions, name="listed job")
    assert "listed job" in client.get("/").get_data(as_text=True)
    response = post_form(client, f"/jobs/{job_id}/cancel")
    assert response.status_code == 303
    assert "This job was cancelled" in client.get(f"/jobs/{job_id}").get_data(as_text=True)


def test_unknown_job_page_is_an_html_404(client):
    response = client.get("/jobs/does-not-exist")
    assert response.status_code == 404
    assert re.search(r"<h1>Error 404</h1>", response.get_data(as_text=True))


def test_a_running_job_page_shows_its_worker_and_stages(client, sessions):
    job_id = make_job(sessions)
    assert 'id="worker">waiting for one<' in client.get(f"/jobs/{job_id}").get_data(as_text=True)
    with transaction(sessions) as session:
        work.claim(session, "gpu", "gpu@box")
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert 'id="worker">gpu@box<' in page
    rows = re.findall(r"<tr>\s*<td>(\w+)</td>.*?status-(\w+).*?<td>(\d+ / \d+)</td>", page, flags=re.DOTALL)
    assert rows == [("embed", "running", "0 / 1")]
    assert "Delete job" not in page


def test_a_finished_job_page_shows_its_stage_times_and_deletes_the_job(client, sessions):
    job_id = make_finished_job(sessions)
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    stages = re.search(r'<table id="stages".*?</table>', page, flags=re.DOTALL).group(0)
    assert re.findall(r"<td>(\w+)</td>", stages) == ["embed", "cluster", "label", "save"]
    assert stages.count("<td>1 / 1</td>") == 4 and stages.count("<td>1.0</td>") == 4 and "test-worker" in stages
    response = post_form(client, f"/jobs/{job_id}/delete")
    assert response.status_code == 303 and response.headers["Location"] == "/"
    assert client.get(f"/jobs/{job_id}").status_code == 404
    assert job_id not in client.get("/").get_data(as_text=True)


def test_deleting_a_queued_job_from_its_page_says_to_cancel_it_first(client, sessions):
    job_id = make_job(sessions)
    response = post_form(client, f"/jobs/{job_id}/delete")
    assert response.status_code == 409
    assert "cancel it first" in response.get_data(as_text=True)
    assert client.get(f"/jobs/{job_id}").status_code == 200


def test_the_job_page_shows_label_faithfulness_per_topic_and_for_the_job(client, sessions):
    job_id = make_finished_job(sessions)
    with transaction(sessions) as session:  # topic 1 poorly labelled
        session.execute(update(Topic).where(Topic.job_id == job_id, Topic.topic == 1).values(faithfulness=0.25))
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "label faithfulness 0.85" in page and "(0.75\n       before 1 unfaithful labels were asked again" in page
    assert "<th title=\"share of the topic's documents whose most similar label is its own\">Faithfulness</th>" in page
    cells = page.split('<td class="faithfulness">')[1:]
    assert cells[0].startswith("0.80</td>") and cells[1].startswith("0.25 <span class=\"hint poor\"")
    topic_page = client.get(f"/jobs/{job_id}/topics/1").get_data(as_text=True)
    assert '<strong id="faithfulness">0.25</strong>' in topic_page and "poor: the label picks out few" in topic_page


def test_a_job_without_faithfulness_scores_shows_no_column(client, sessions):
    job_id = make_finished_job(sessions)
    with transaction(sessions) as session:  # as a job finished before the scores were kept
        session.execute(update(Topic).where(Topic.job_id == job_id).values(faithfulness=None))
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "Faithfulness</th>" not in page
    assert 'id="faithfulness"' not in client.get(f"/jobs/{job_id}/topics/0").get_data(as_text=True)


def test_the_topic_page_shows_the_labels_prompts_and_answers_collapsed_and_escaped(client, sessions):
    job_id = make_finished_job(sessions)
    page = client.get(f"/jobs/{job_id}/topics/0").get_data(as_text=True)
    assert '<details class="provenance" id="provenance">' in page
    assert "(ScriptedLabeler, scripted-0.5b)" in page and "decoding greedy" in page and "doc_tokens 40" in page
    assert "- doc 1 &lt;b&gt;text&lt;/b&gt;" in page and "<b>text</b>" not in page
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page and "<script>alert(2)" not in page
    assert "Asked again (unfaithful): its label was not kept" in page
    assert f"/api/v1/jobs/{job_id}/provenance?download=1" in page
    assert 'id="provenance"' not in client.get(f"/jobs/{job_id}/topics/1").get_data(as_text=True)  # keywords
