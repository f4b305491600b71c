"""Merging topics of a finished job: the API and the job page's form on a real database and queue, and the
worker's merge on a job that ran through its stages with the real embedding model (labels scripted here)."""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import update

import shared.queue
from shared import jobs, merges
from shared.bertopic_archive import TOPICS
from shared.db import transaction
from shared.edits import move_document
from shared.merge_model import TopicMerge
from shared.storage import LocalArtifactStore, map_key
from shared.work import db_now
from tests.factories import drain_queue, make_finished_job, make_job
from tests.forms import post_form
from tests.test_api import assert_error
from tests.conftest import read_corpus
from tests.test_stages import ScriptedLabeler, drive, make_runner
from worker.merger import EDITED, MergeRunner
from worker.pipeline.merge import MergeError, check_merge, regroup_themes

MERGED_LABEL = "Files and numbers"  # short enough for one line on the map
CHAPTERS = ("Internet Protocols and Support", "Numeric and Mathematical Modules", "File and Directory Access",
            "Graphical User Interfaces with Tk", "Data Compression and Archiving", "Cryptographic Services",
            "Internationalization", "Structured Markup Processing Tools")


@pytest.fixture(scope="session")
def chapter_texts():
    """240 Python-docs paragraphs from eight chapters: about eleven topics in five themes at min_topic_size 8
    (test_stages' three chapters give three topics, too few to merge two and keep others)."""
    records = read_corpus("python_docs.jsonl")
    return [text for chapter in CHAPTERS
            for text in [r["text"] for r in records if r["label"] == chapter and len(r["text"].split()) >= 12][:30]]


class Answering:
    """A labeler that gives one answer to every prompt, and records the prompts; ``during`` runs at each call."""

    name = "scripted"

    def __init__(self, answer: str, during=None):
        self.answer, self.during, self.asked = answer, during, []

    def generate(self, conversations, on_progress=None):
        self.asked += conversations
        if self.during:
            self.during()
        return [f'Label: "{self.answer}"' for _ in conversations]


def merge_runner(sessions, store_dir, embedder, labeler) -> MergeRunner:
    return MergeRunner(factory=sessions, store=LocalArtifactStore(store_dir / "artifacts"),
                       embedder=lambda: embedder, labeler=lambda: labeler, embedding_model_ref="sentence-transformers/all-MiniLM-L6-v2",
                       doc_tokens=40, heartbeat_seconds=0.2)


def documents_by_topic(client, job_id) -> dict[int, frozenset[int]]:
    documents = client.get(f"/api/v1/jobs/{job_id}/documents?limit=10000").get_json()["documents"]
    groups: dict[int, set[int]] = {}
    for d in documents:
        groups.setdefault(d["topic"], set()).add(d["index"])
    return {topic: frozenset(members) for topic, members in groups.items()}


def test_merging_two_topics_redoes_the_merged_one_and_keeps_every_other_topic(
    client, settings, sessions, embedder, chapter_texts
):
    job_id = make_job(sessions, chapter_texts, params={"min_topic_size": 8})
    store_dir = settings.data_dir  # the workers' artifacts where the web reads them (data_dir/artifacts)
    drive(make_runner(sessions, store_dir, embedder, ScriptedLabeler()), sessions, job_id)
    before = {t["topic"]: t for t in client.get(f"/api/v1/jobs/{job_id}/topics").get_json()["topics"]}
    assert len(before) >= 4, "the corpus should give enough topics to rename one and merge two others"
    assert client.patch(f"/api/v1/jobs/{job_id}/topics/0", json={"label": "My own name"}).status_code == 200
    docs_before = documents_by_topic(client, job_id)
    original_before = [d["original_topic"] for d in
                       client.get(f"/api/v1/jobs/{job_id}/documents?limit=10000").get_json()["documents"]]
    themes_before = client.get(f"/api/v1/jobs/{job_id}/themes").get_json()["themes"]
    a, b = sorted(before)[-2:]  # the two smallest

    response = client.post(f"/api/v1/jobs/{job_id}/merges", json={"topics": [b, a]})
    assert response.status_code == 202
    merge = response.get_json()
    assert (merge["status"], merge["topics"], merge["result_topic"]) == ("queued", [b, a], None)
    assert response.headers["Location"] == f"/api/v1/jobs/{job_id}/merges/{merge['id']}"
    assert drain_queue(settings, shared.queue.MERGE) == [merge["id"]]
    # While it is queued, nothing else edits the topics.
    assert_error(client.post(f"/api/v1/jobs/{job_id}/merges", json={"topics": [1, 2]}), 409, "edit_in_progress")
    assert_error(client.patch(f"/api/v1/jobs/{job_id}/topics/1", json={"label": "Too soon"}), 409, "edit_in_progress")
    assert_error(client.patch(f"/api/v1/jobs/{job_id}/documents/0", json={"topic": 1}), 409, "edit_in_progress")
    assert 'status-queued">queued' in client.get(f"/jobs/{job_id}").get_data(as_text=True)

    labeler = Answering(MERGED_LABEL)
    runner = merge_runner(sessions, store_dir, embedder, labeler)
    assert runner.run(merge["id"]) == "succeeded"
    assert runner.run(merge["id"]) == "skipped"  # a second message for the same merge changes nothing
    done = client.get(response.headers["Location"]).get_json()
    assert done["status"] == "succeeded" and done["error"] is None
    merged = done["result_topic"]

    after = {t["topic"]: t for t in client.get(f"/api/v1/jobs/{job_id}/topics").get_json()["topics"]}
    job = client.get(f"/api/v1/jobs/{job_id}").get_json()
    assert len(after) == len(before) - 1 == job["n_topics"]
    # Scored labels before; after the merge none is (the labels compete with one fewer): no stale figures.
    assert all(t["faithfulness"] is not None for t in before.values())
    assert all(t["faithfulness"] is None for t in after.values()) and "label_faithfulness" not in job["scores"]
    provenance = {p["topic"]: p["provenance"] for p in
                  client.get(f"/api/v1/jobs/{job_id}/provenance").get_json()["topics"]}
    assert provenance[merged]["answer"] == f'Label: "{MERGED_LABEL}"'  # the merged topic's own prompt and answer
    assert all(provenance[t]["answer"].startswith('Label: "Topic number') for t in after if t != merged)
    docs_after = documents_by_topic(client, job_id)
    assert docs_after[merged] == docs_before[a] | docs_before[b]
    assert after[merged]["size"] == before[a]["size"] + before[b]["size"]
    # Its words and documents were made again, from both parts' documents.
    new = after[merged]
    assert new["keywords"] not in (before[a]["keywords"], before[b]["keywords"])
    words_of = {part: " ".join(chapter_texts[i] for i in docs_before[part]).lower() for part in (a, b)}
    assert any(w in words_of[a] for w in new["keywords"]) and any(w in words_of[b] for w in new["keywords"])
    assert all(w in words_of[a] or w in words_of[b] for w in new["keywords"])
    assert len(new["keyword_weights"]) == len(new["keywords"]) and new["representations"]["KeyBERT"]
    assert set(new["representative_doc_indices"]) <= docs_after[merged]
    # Its label is the LLM's new answer, asked with its new keywords; no other topic's label changed.
    assert (new["label"], new["label_source"]) == (MERGED_LABEL, "llm")
    assert len(labeler.asked) == 1 and ", ".join(new["keywords"]) in labeler.asked[0][-1]["content"]
    new_id = {old: next(t for t, docs in docs_after.items() if docs == docs_before[old]) for old in before
              if old not in (a, b)}
    assert (after[new_id[0]]["label"], after[new_id[0]]["label_source"]) == ("My own name", "custom")
    assert after[new_id[0]]["generated_label"] == before[0]["generated_label"]
    for old, topic in new_id.items():
        assert after[topic]["generated_label"] == before[old]["generated_label"]
        assert after[topic]["size"] == before[old]["size"]
    # The arrays agree with the topics; outliers stayed outliers, before and after outlier reduction.
    assert {t: len(d) for t, d in docs_after.items() if t >= 0} == {t: row["size"] for t, row in after.items()}
    assert len(docs_after.get(-1, ())) == job["n_outliers"] == len(docs_before.get(-1, ()))
    documents = client.get(f"/api/v1/jobs/{job_id}/documents?limit=10000").get_json()["documents"]
    assert [d["original_topic"] == -1 for d in documents] == [t == -1 for t in original_before]
    themes = client.get(f"/api/v1/jobs/{job_id}/themes").get_json()["themes"]
    assert themes, "eleven topics are grouped into themes"
    assert sorted(t for theme in themes for t in theme["topics"]) == sorted(after)
    assert all(theme["size"] == sum(after[t]["size"] for t in theme["topics"]) for theme in themes)
    assert all(after[t]["theme"] == theme["theme"] for theme in themes for t in theme["topics"])
    # The theme of the larger part; of equal parts, the lower id's (the larger topic when the topics were made).
    assert after[merged]["theme"] == max((before[a], before[b]), key=lambda t: (t["size"], -t["topic"]))["theme"]
    assert all(after[topic]["theme"] == before[old]["theme"] for old, topic in new_id.items())
    assert {t["label"] for t in themes} <= {t["label"] for t in themes_before}
    # What a user takes away shows the merge: the model, the map.
    archive = client.get(f"/api/v1/jobs/{job_id}/model.zip")
    assert archive.status_code == 200, archive.get_data(as_text=True)
    with zipfile.ZipFile(io.BytesIO(archive.data)) as z:
        model = json.loads(z.read(TOPICS))
    assert len([t for t in model["topic_representations"] if int(t) >= 0]) == len(after)
    assert MERGED_LABEL in model["custom_labels"] and "My own name" in model["custom_labels"]
    assert Counter(model["topics"])[merged] == after[merged]["size"]
    svg = LocalArtifactStore(store_dir / "artifacts").get(map_key(job_id, "svg"))
    assert MERGED_LABEL.encode() in svg and b"My own name" in svg
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert 'status-succeeded">succeeded' in page and MERGED_LABEL in page

    # A document moved while a merge runs (let in just before it was asked for): the merge fails, nothing changes.
    c, d = sorted(after)[-2:]
    second = client.post(f"/api/v1/jobs/{job_id}/merges", json={"topics": [c, d]}).get_json()

    def move_now():
        with transaction(sessions) as session:
            move_document(session, job_id, next(iter(docs_after[c])), d)

    assert merge_runner(sessions, store_dir, embedder, Answering("Late", during=move_now)).run(second["id"]) == "failed"
    failed = client.get(f"/api/v1/jobs/{job_id}/merges/{second['id']}").get_json()
    assert (failed["status"], failed["error"]) == ("failed", EDITED)
    assert len(client.get(f"/api/v1/jobs/{job_id}/topics").get_json()["topics"]) == len(after)
    history = client.get(f"/api/v1/jobs/{job_id}/merges").get_json()["merges"]
    assert [m["id"] for m in history] == [second["id"], merge["id"]]


def test_invalid_merges_answer_with_one_line_reasons(client, sessions):
    job_id = make_finished_job(sessions)  # topics 0 and 1
    url = f"/api/v1/jobs/{job_id}/merges"
    assert_error(client.post(url, json={"topics": [0]}), 400, "invalid_merge", "at least two")
    assert_error(client.post(url, json={"topics": [0, 0]}), 400, "invalid_merge", "0 came twice")
    assert_error(client.post(url, json={"topics": [0, 7]}), 400, "invalid_merge", "no topic 7")
    assert_error(client.post(url, json={"topics": [-1, 0]}), 400, "invalid_merge", "no topic -1")
    assert_error(client.post(url, json={"topics": [0, True]}), 400, "invalid_merge", "topics")
    assert_error(client.post(url, json={"topics": "0,1"}), 400, "invalid_merge", "topics")
    assert_error(client.post(url, json={}), 400, "invalid_merge", "topics")
    assert_error(client.post(url, data="[0, 1]", content_type="application/json"), 400, "invalid_json")
    unfinished = make_job(sessions)
    assert_error(client.post(f"/api/v1/jobs/{unfinished}/merges", json={"topics": [0, 1]}), 409, "not_ready", "queued")
    assert_error(client.post("/api/v1/jobs/nope/merges", json={"topics": [0, 1]}), 404, "not_found")
    assert_error(client.get(f"{url}/nope"), 404, "not_found")
    assert client.get(url).get_json() == {"merges": []}
    # A re-label run in progress holds the topics too.
    assert client.post(f"/api/v1/jobs/{job_id}/labels", json={}).status_code == 202
    assert_error(client.post(url, json={"topics": [0, 1]}), 409, "edit_in_progress", "re-labelled")


def test_the_job_page_form_queues_a_merge_and_shows_its_status(client, settings, sessions):
    job_id = make_finished_job(sessions, label="First <b>topic</b>")
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert page.count('name="topics"') == 2 and "First &lt;b&gt;topic&lt;/b&gt;" in page
    response = post_form(client, f"/jobs/{job_id}/merge", data={"topics": ["0", "1"]})
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/jobs/{job_id}")
    (merge,) = client.get(f"/api/v1/jobs/{job_id}/merges").get_json()["merges"]
    assert merge["topics"] == [0, 1] and drain_queue(settings, shared.queue.MERGE) == [merge["id"]]
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert 'status-queued">queued' in page and 'name="topics"' not in page  # no second merge while this one waits
    assert post_form(client, f"/jobs/{job_id}/merge", data={"topics": ["0", "1"]}).status_code == 409
    assert_error(client.post(f"/api/v1/jobs/{job_id}/labels", json={}), 409, "edit_in_progress", "merge")
    assert post_form(client, f"/jobs/{make_finished_job(sessions)}/merge", data={"topics": ["0"]}).status_code == 400


def test_a_merge_of_a_job_without_stored_embeddings_fails_and_changes_nothing(client, sessions, tmp_path):
    job_id = make_finished_job(sessions)
    merge = client.post(f"/api/v1/jobs/{job_id}/merges", json={"topics": [0, 1]}).get_json()
    runner = merge_runner(sessions, tmp_path, embedder=None, labeler=None)
    assert runner.run(merge["id"]) == "failed"
    failed = client.get(f"/api/v1/jobs/{job_id}/merges/{merge['id']}").get_json()
    assert failed["status"] == "failed" and "embeddings" in failed["error"]
    assert [t["topic"] for t in client.get(f"/api/v1/jobs/{job_id}/topics").get_json()["topics"]] == [0, 1]
    assert client.patch(f"/api/v1/jobs/{job_id}/topics/1", json={"label": "Now fine"}).status_code == 200


def test_a_merge_whose_worker_went_silent_is_sent_again_by_the_sweep_and_goes_with_its_job(
    client, settings, sessions, redis_client
):
    from cli.supervisor import sweep_once

    job_id = make_finished_job(sessions, label="Keep me")
    with transaction(sessions) as session:
        merge_id = merges.create(session, job_id, [0, 1]).id
    with transaction(sessions) as session:
        assert merges.claim(session, merge_id, timedelta(minutes=1))
        assert not merges.claim(session, merge_id, timedelta(minutes=1))  # a live worker's merge is not taken
        assert merges.requeue_stale(session, timedelta(minutes=1)) == []
        session.execute(update(TopicMerge).where(TopicMerge.id == merge_id)
                        .values(heartbeat_at=db_now(session) - timedelta(minutes=5)))
    assert sweep_once(settings, timedelta(minutes=1)).merges == 1  # what `topicq recover` and the workers run
    assert drain_queue(settings, shared.queue.MERGE) == [merge_id]
    with transaction(sessions) as session:
        assert merges.get(session, merge_id).status == "queued"
        late = [jobs.TopicRow(0, 20, "Late", "llm", ["x"], {}, [1])]
        assert not merges.finish(session, merge_id, topics=late, themes=[], arrays={}, n_outliers=0, result_topic=0)
    topics = client.get(f"/api/v1/jobs/{job_id}/topics").get_json()["topics"]
    assert [t["label"] for t in topics] == ["Keep me", "Second"]  # a late finish changed nothing
    assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 204
    with transaction(sessions) as session:
        assert merges.get(session, merge_id) is None and jobs.get_job(session, job_id) is None


def test_check_merge_and_regroup_themes():
    check_merge([0, 1, 2], [2, 0])
    for merge, reason in (([1], "at least two"), ([1, 1], "more than once"), ([1, 5], "no topic 5")):
        with pytest.raises(MergeError, match=reason):
            check_merge([0, 1, 2], merge)
    # Topics 0..3 after a merge; theme 1 lost its only topic, theme 0's topics run largest first.
    grouped = regroup_themes([0, 1, 2], {0: 2, 1: 0, 2: 0, 3: 2}, {0: 50, 1: 20, 2: 30, 3: 5})
    assert grouped == {0: ([2, 1], 50), 2: ([0, 3], 55)}


def test_a_merge_keeps_the_domains_with_their_themes_sizes_and_drops_one_left_without_themes():
    """Topic 2 (theme 1, alone in domain 1) merged into topic 0 (theme 0): theme 1 and then domain 1 are left
    empty; domain 0 keeps its themes with their new sizes, largest first."""
    from worker.merger import _Read, _rows
    from worker.pipeline.label import Label
    from worker.pipeline.merge import MergeResult, TopicState
    from worker.pipeline.represent import TopicRepresentation

    states = [TopicState(0, "Cards", "llm", theme=0), TopicState(1, "Boards", "llm", theme=0),
              TopicState(2, "Dice", "llm", theme=1), TopicState(3, "Editors", "llm", theme=2)]
    read = _Read(
        job_id="j", merge=[0, 2], params=None, embedding_key=None, texts=[], doc_topics=np.array([]), original=None,
        coords=None, states=states, scores=None, template="",
        themes=[jobs.ThemeRow(0, "Games", "llm", [0, 1], 30, None, 0),
                jobs.ThemeRow(1, "Chance", "llm", [2], 5, None, 1),
                jobs.ThemeRow(2, "Software", "llm", [3], 20, None, 0)],
        domains=[jobs.DomainRow(0, "Leisure", "llm", [0, 2], 50, None), jobs.DomainRow(1, "Luck", "llm", [1], 5, None)],
    )
    representations = [TopicRepresentation(0, 25, ["card"], {}, []), TopicRepresentation(1, 12, ["editor"], {}, []),
                        TopicRepresentation(2, 10, ["board"], {}, [])]
    result = MergeResult(representations=representations, doc_topics=np.array([]), original_doc_topics=None, merged=0,
                         merged_theme=0, new_of={0: 0, 2: 0, 3: 1, 1: 2}, kept={1: states[3], 2: states[1]},
                         scores=None, topic_model=None)
    _rows_, _custom, themes, domains = _rows(read, result, Label("Card and dice games", "llm"))
    assert [(t.theme, t.topics, t.size, t.domain) for t in themes] == [(0, [0, 2], 35, 0), (2, [1], 12, 0)]
    assert [(d.domain, d.label, d.themes, d.size) for d in domains] == [(0, "Leisure", [0, 2], 47)]


def test_merge_topics_maps_every_document_and_keeps_the_unmerged_topics_state(embedder, chapter_texts):
    from worker.pipeline.embed import embed
    from worker.pipeline.merge import TopicState, merge_topics

    texts = chapter_texts[:90]  # three chapters of 30
    embeddings = embed(texts, embedder, 32)
    doc_topics = np.repeat([0, 1, 2], 30).astype(np.int32)
    doc_topics[[0, 31]] = -1
    original = doc_topics.copy()
    original[[5, 6]] = 3  # topic 3's documents were all moved to topic 0 by the user
    states = [TopicState(0, "Internet", "llm", "Networking", theme=1), TopicState(1, "Numbers", "llm", theme=0),
              TopicState(2, "Files", "keywords", theme=1), TopicState(3, "Emptied", "llm", theme=1)]
    result = merge_topics(texts, embeddings, doc_topics, states, [2, 1], embedder, original_doc_topics=original)

    assert [r.size for r in result.representations] == [59, 29]  # largest first: the merged topic is 0
    assert result.merged == 0 and result.merged_theme == 1  # topic 2 is the larger part (30 against 29)
    assert result.new_of == {0: 1, 1: 0, 2: 0}
    assert result.kept == {1: states[0]}
    assert (result.doc_topics == np.where(doc_topics < 0, -1, np.where(doc_topics == 0, 1, 0))).all()
    assert (result.original_doc_topics[[5, 6]] == 1).all()  # their current topic, as topic 3 is gone
    assert ((result.original_doc_topics < 0) == (original < 0)).all()
    assert result.scores.outlier_share == pytest.approx(2 / 90)
