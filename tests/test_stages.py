"""The stage runner on a real database with the real embedding model: a job's work items claimed, run and
chained the way workers do (labels from a scripted labeler here; the end-to-end tests use the real LLM)."""

import threading
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import func, select, update

from shared import assignments, jobs, work
from shared.bertopic_archive import topic_embeddings
from shared.db import transaction
from shared.label_estimate import labelling_estimate
from shared.models import WorkItem
from shared.storage import LocalArtifactStore, map_key, model_key
from tests.conftest import read_corpus
from tests.factories import make_job
from worker import artifacts
from worker.assigner import AssignRunner
from worker.pipeline.run import PipelineConfig
from worker.stages import USER_SAFE_ERROR, Chunking, StageRunner


@pytest.fixture(scope="session")
def corpus_texts():
    """180 Python-docs paragraphs from three distinct chapters."""
    records = read_corpus("python_docs.jsonl")
    chapters = ("Internet Protocols and Support", "Numeric and Mathematical Modules", "File and Directory Access")
    texts = []
    for chapter in chapters:
        texts += [r["text"] for r in records if r["label"] == chapter and len(r["text"].split()) >= 12][:60]
    return texts


class ScriptedLabeler:
    """Answers like a chatty LLM would; records what it was asked, one list per generate call."""

    name = "scripted"

    def __init__(self):
        self.conversations = []
        self.calls = []

    def generate(self, conversations, on_progress=None):
        self.calls.append(conversations)
        self.conversations += conversations
        answers = [f'Label: "Topic number {len(self.conversations) - len(conversations) + i}".\nBecause...'
                   for i in range(len(conversations))]
        if on_progress:
            on_progress(len(conversations))
        return answers


def make_runner(sessions, tmp_path, embedder, labeler=None, chunking=Chunking(60, 4, 4), worker="worker-1"):
    return StageRunner(
        factory=sessions,
        store=LocalArtifactStore(tmp_path / "artifacts"),
        embedding_model_name="test-model",
        embedding_model_ref="sentence-transformers/all-MiniLM-L6-v2",
        config=PipelineConfig(embedding_batch_size=32, doc_tokens=40),
        embedder=lambda: embedder,
        labeler=lambda: labeler,
        worker=worker,
        chunking=chunking,
        heartbeat_seconds=0.2,
    )


def drive(runner, sessions, job_id, limit=100) -> list[str]:
    """Run ready items, accelerator and CPU queues in turn, until the job ends; returns the outcomes."""
    outcomes = []
    for _ in range(limit):
        with sessions() as session:
            if jobs.get_job(session, job_id).status not in ("queued", "running"):
                return outcomes
        ran = runner.run_next("gpu") + runner.run_next("cpu")
        if not ran:
            return outcomes
        outcomes += ran
    raise AssertionError(f"the job did not end in {limit} items: {outcomes[-5:]}")


def items_of(sessions, job_id):
    with sessions() as session:
        return [(i.stage, i.chunk, i.status) for i in
                session.scalars(select(WorkItem).where(WorkItem.job_id == job_id).order_by(WorkItem.id))]


def test_a_job_runs_through_its_stages_to_topics_labels_and_document_results(sessions, tmp_path, embedder, corpus_texts):
    labeler = ScriptedLabeler()
    job_id = make_job(sessions, corpus_texts, params={"min_topic_size": 10})
    runner = make_runner(sessions, tmp_path, embedder, labeler)
    estimates = []  # the job's labelling estimate as each item is claimed

    def on_claim(items):
        with sessions() as session:
            if items:
                estimates.append((items[0].stage, labelling_estimate(session, jobs.get_job(session, job_id), 4)))

    runner.on_claim = on_claim
    outcomes = drive(runner, sessions, job_id)
    assert all(o.endswith(": done") for o in outcomes), outcomes

    with sessions() as session:
        job = jobs.get_job(session, job_id)
        topics = jobs.topics_of(session, job_id)
        doc_topics = jobs.load_array(session, job_id, "topic")
        original = jobs.load_array(session, job_id, "topic_original")
        xs = jobs.load_array(session, job_id, "x")
        themes = jobs.themes_of(session, job_id)
    assert job.status == "succeeded" and job.stage == "done" and job.progress == 1.0
    assert job.started_at is not None and job.finished_at is not None
    assert len(topics) >= 3 and job.n_topics == len(topics)
    assert len(doc_topics) == len(corpus_texts) == len(xs) and np.isfinite(xs).all()
    assert job.n_outliers == int((doc_topics == -1).sum())
    # Outlier reduction moved only outliers, and the job says so in its scores.
    assert ((original == doc_topics) | (original == -1)).all()
    assert job.scores["outliers_reassigned"] == int(((original == -1) & (doc_topics >= 0)).sum())
    assert job.scores["outlier_share"] == pytest.approx(job.n_outliers / len(corpus_texts), abs=1e-4)
    assert 0 < job.scores["diversity"] <= 1 and -1 <= job.scores["coherence_npmi"] <= 1
    # Themes group the topics when there are enough of them.
    if len(topics) >= 8:
        assert sorted(t for theme in themes for t in theme.topics) == [t.topic for t in topics]
        assert all(t.theme is not None for t in topics)
    else:
        assert themes == [] and all(t.theme is None for t in topics)
    for topic in topics:
        assert topic.size == int((doc_topics == topic.topic).sum())
        assert len(topic.keywords) == 10 and len(topic.representations["KeyBERT"]) > 0 and topic.representations["MMR"]
        assert 1 <= len(topic.representative_docs) <= 5
        assert all(doc_topics[i] == topic.topic for i in topic.representative_docs)
        assert len(topic.keyword_weights) == 10 and topic.keyword_weights == sorted(topic.keyword_weights, reverse=True)

    # What a user takes away: the fitted model, and the map as PNG and SVG with the labels on it.
    store = LocalArtifactStore(tmp_path / "artifacts")
    matrix, ids, _outliers = topic_embeddings(store.get(model_key(job_id)))
    assert set(ids) >= {t.topic for t in topics} and matrix.shape[0] == len(ids)
    assert store.get(map_key(job_id, "png")).startswith(b"\x89PNG")
    assert topics[0].label.encode() in store.get(map_key(job_id, "svg"))
    # New documents go to the topic their words are about: the job's own representative documents, as new ones.
    with transaction(sessions) as session:
        probe = [corpus_texts[t.representative_docs[0]] for t in topics]
        assignment_id = assignments.create(session, job_id, probe).id
    runner = AssignRunner(sessions, store, lambda: embedder, heartbeat_seconds=0.2)
    assert runner.run(assignment_id) == "succeeded"
    assert runner.run(assignment_id) == "skipped"  # a repeated message finds it answered
    with sessions() as session:
        answered = assignments.get(session, assignment_id)
    agree = sum(a == t.topic for a, t in zip(answered.topics, topics))
    assert agree >= 0.8 * len(topics), (answered.topics, [t.topic for t in topics])
    assert all(0 < s <= 1 for s in answered.similarities)

    # Labels: cleaned LLM answers, numbered in the order asked, over several label chunks; the unfaithful
    # ones were asked again (at most a quarter), with their competitor's label in the prompt.
    faithful = artifacts.get_faithful(store, job_id)
    kept = set(faithful.kept)
    assert len(faithful.flagged) <= max(1, len(topics) // 4) and kept <= set(faithful.flagged)
    assert [t.label for i, t in enumerate(topics) if i not in kept] == [
        f"Topic number {i}" for i in range(len(topics)) if i not in kept]
    reasked = labeler.conversations[len(topics) : len(topics) + len(faithful.flagged)]
    assert all("are often confused with those of another topic, labelled 'Topic number" in c[-1]["content"]
               for c in reasked)
    # Each label keeps the prompt sent and the raw answer, and its re-asks; a theme's label too.
    for i, (t, conversation) in enumerate(zip(topics, labeler.conversations)):
        assert t.provenance["messages"] == conversation and t.provenance["answer"].startswith('Label: "Topic number')
        assert t.provenance["labeler"]["backend"] == "ScriptedLabeler"
        assert [r["kept"] for r in t.provenance["retries"] if r["reason"] == "unfaithful"] == (
            [i in kept] if i in faithful.flagged else [])
    assert all(theme.provenance["messages"][-1]["content"].startswith("I have a broad theme") for theme in themes)
    # Each topic has its faithfulness, the job its figure before and after the re-ask.
    assert all(0 <= t.faithfulness <= 1 for t in topics)
    assert job.scores["label_faithfulness"] >= job.scores["label_faithfulness_before"] >= 0
    assert job.scores["labels_flagged"] == len(faithful.flagged)
    # Each prompt carried that topic's keywords.
    assert all(", ".join(t.keywords) in c[-1]["content"] for t, c in zip(topics, labeler.conversations))
    # The plan it ran: three embedding chunks of 60, clustering, label chunks of 4 topics, then faithfulness
    # and the themes, saving.
    plan = items_of(sessions, job_id)
    n_label = -(-len(topics) // 4) + 1
    assert plan == ([("embed", c, "done") for c in range(3)] + [("cluster", 0, "done")]
                    + [("label", c, "done") for c in range(n_label)] + [("save", 0, "done")])
    with sessions() as session:
        times = work.stage_times(session, job_id)
    assert [(t.stage, t.status, t.chunks_done) for t in times] == [
        ("embed", "done", 3), ("cluster", "done", 1), ("label", "done", n_label), ("save", "done", 1)]
    assert all(t.seconds > 0 and t.worker == "worker-1" for t in times)
    # Clustering recorded what to label; each label item's claim saw fewer labels left, timed from the second on.
    assert (job.topics_to_label, job.themes_to_label) == (len(topics), len(themes))
    labelling = [e for stage, e in estimates if stage == "label"]
    # (the last item, faithfulness and the themes, has nothing left to estimate when the job has no themes)
    assert [e.labels_left if e else 0 for e in labelling] == [len(topics) + len(themes) - min(4 * c, len(topics))
                                                             for c in range(n_label)]
    assert labelling[0].seconds_per_label is None and all(e.seconds_per_label > 0 for e in labelling[1:] if e)
    assert all(e is None for stage, e in estimates if stage != "label")


def test_a_job_with_many_themes_gets_domains_labelled_after_its_themes(sessions, tmp_path, embedder, corpus_texts,
                                                                       monkeypatch):
    """Each topic made its own theme and two domains asked for from 3 themes (the service asks for domains from 8
    themes, which 180 documents of three chapters do not give; how many topics they give depends on the CPU's
    arithmetic, 3 on an AVX-512 EPYC): the last label item labels the domains after the themes, and a job
    without LLM labels names its domains by their keywords."""
    import worker.pipeline.run
    import worker.pipeline.themes

    monkeypatch.setattr(worker.pipeline.run, "group_topics",
                        lambda vectors, sizes: np.arange(len(vectors), dtype=np.int32))
    monkeypatch.setattr(worker.pipeline.themes, "number_of_domains", lambda n: 2 if n >= 3 else 0)
    labeler = ScriptedLabeler()
    runner = make_runner(sessions, tmp_path, embedder, labeler)
    job_id = make_job(sessions, corpus_texts, params={"min_topic_size": 5})
    assert all(o.endswith(": done") for o in drive(runner, sessions, job_id))
    with sessions() as session:
        topics, themes, domains = (jobs.topics_of(session, job_id), jobs.themes_of(session, job_id),
                                   jobs.domains_of(session, job_id))
    assert len(topics) == len(themes) >= 3, "the three chapters should give 3 topics or more at min_topic_size 5"
    # Two asked for; the balancing may add one (no domain holds over half of the themes, and never fewer than 3
    # domains: 4 topics here on an AMX Xeon gave 3).
    assert 2 <= len(domains) <= len(themes) and [d.domain for d in domains] == list(range(len(domains)))
    assert sorted(t for d in domains for t in d.themes) == [t.theme for t in themes]
    size_of = {t.theme: t.size for t in themes}
    assert all(d.size == sum(size_of[t] for t in d.themes) for d in domains)
    assert [d.size for d in domains] == sorted((d.size for d in domains), reverse=True)
    assert all(t.domain == d.domain for d in domains for t in themes if t.theme in d.themes)
    # Asked last, one prompt per domain naming its themes' labels; distinct from every theme's label.
    asked = labeler.conversations[-len(domains):]
    assert all(c[-1]["content"].startswith("I have a broad domain") for c in asked)
    assert all(f"- {themes[d.themes[0]].label} (topics: " in c[-1]["content"] for d, c in zip(domains, asked))
    assert all(d.label_source == "llm" and d.provenance["messages"] == c for d, c in zip(domains, asked))
    labels = [d.label for d in domains] + [t.label for t in themes]
    assert len(set(labels)) == len(labels)
    assert artifacts.get_clusters(runner.store, job_id).domain_of.tolist() == [
        next(d.domain for d in domains if t.theme in d.themes) for t in themes]
    with sessions() as session:  # the labelling estimate counted the domains among the labels to make
        job = jobs.get_job(session, job_id)
    assert (job.topics_to_label, job.themes_to_label, job.domains_to_label) == (len(topics), len(themes), len(domains))

    plain = make_job(sessions, corpus_texts, params={"min_topic_size": 5, "generate_labels": False})
    assert all(o.endswith(": done") for o in drive(runner, sessions, plain))
    with sessions() as session:
        keyword_domains = jobs.domains_of(session, plain)
    assert len(keyword_domains) == len(domains) and all(d.label_source == "keywords" and d.provenance is None
                                             for d in keyword_domains)


def test_clusters_written_before_domains_still_load_without_them(tmp_path):
    import io

    from worker.pipeline.run import Clusters

    store = LocalArtifactStore(tmp_path / "artifacts")
    clusters = Clusters([], np.zeros(3, dtype=np.int32), np.zeros(3, dtype=np.int32), np.zeros((3, 2), np.float32),
                        np.array([0, 1], dtype=np.int32), None, domain_of=np.array([0, 0], dtype=np.int32))
    artifacts.put_clusters(store, "j", clusters)
    assert artifacts.get_clusters(store, "j").domain_of.tolist() == [0, 0]
    older = io.BytesIO()
    np.savez(older, doc_topics=clusters.doc_topics, original_doc_topics=clusters.original_doc_topics,
             coords=clusters.coords, theme_of=clusters.theme_of)
    store.put("jobs/j/clusters.npz", older.getvalue())
    loaded = artifacts.get_clusters(store, "j")
    assert loaded.domain_of.tolist() == [] and loaded.theme_of.tolist() == [0, 1]
    assert artifacts.get_domains(store, "j") == []


def test_same_documents_reuse_their_embeddings(sessions, tmp_path, embedder, corpus_texts, monkeypatch):
    runner = make_runner(sessions, tmp_path, embedder)
    first = make_job(sessions, corpus_texts, params={"generate_labels": False})
    drive(runner, sessions, first)
    assert len(list((tmp_path / "artifacts" / "embeddings").glob("*.npy"))) == 1

    import worker.stages as stages_module

    def must_not_embed(*_args, **_kwargs):
        raise AssertionError("embeddings were computed again")

    monkeypatch.setattr(stages_module, "embed", must_not_embed)
    second = make_job(sessions, corpus_texts, params={"generate_labels": False, "min_topic_size": 20})
    drive(runner, sessions, second)
    with sessions() as session:
        assert jobs.get_job(session, second).status == "succeeded"
    assert items_of(sessions, second)[0] == ("embed", 0, "done") and ("embed", 1, "done") not in items_of(sessions, second)


def test_sizes_beyond_the_corpus_give_at_most_one_topic_instead_of_failing(sessions, tmp_path, embedder, corpus_texts):
    job_id = make_job(sessions, corpus_texts[:60],
                      params={"min_topic_size": 5000, "min_samples": 5000, "nr_topics": "auto", "generate_labels": False})
    drive(make_runner(sessions, tmp_path, embedder), sessions, job_id)
    with sessions() as session:
        assert jobs.get_job(session, job_id).status == "succeeded"
        assert len(jobs.topics_of(session, job_id)) <= 1


def test_a_cancelled_job_never_starts_and_a_duplicate_doorbell_does_nothing(sessions, tmp_path):
    job_id = make_job(sessions)
    with transaction(sessions) as session:
        assert jobs.cancel(session, job_id)
    runner = make_runner(sessions, tmp_path, None)
    runner.embedder = lambda: (_ for _ in ()).throw(AssertionError("a cancelled job must not reach the models"))
    assert runner.run_next("gpu") == [] and runner.run_next("cpu") == []
    with sessions() as session:
        assert jobs.get_job(session, job_id).status == "cancelled"
    assert items_of(sessions, job_id) == [("embed", 0, "ready")]


def test_a_failing_stage_fails_its_job_with_a_user_safe_message(sessions, tmp_path):
    class BrokenEmbedder:
        max_seq_length, tokenizer = 256, None  # no tokenizer: each document is one piece

        def encode(self, *_args, **_kwargs):
            raise RuntimeError("CUDA error: secret internal detail at /home/op/model.py:12")

    job_id = make_job(sessions)
    assert make_runner(sessions, tmp_path, BrokenEmbedder()).run_next("gpu") == [f"job {job_id} embed 0: failed"]
    with sessions() as session:
        job = jobs.get_job(session, job_id)
    assert job.status == "failed" and job.error == USER_SAFE_ERROR and job.finished_at is not None


def test_cancelling_during_embedding_stops_within_the_chunk_without_results(sessions, tmp_path, embedder, corpus_texts):
    job_id = make_job(sessions, corpus_texts)

    class CancelMidway:
        """Embeds for real, but the user cancels after the first batch."""

        def encode(self, texts, **kwargs):
            with transaction(sessions) as session:
                jobs.cancel(session, job_id)
            return embedder.encode(texts, **kwargs)

        def __getattr__(self, name):  # the rest (tokenizer, max_seq_length) is the real model's
            return getattr(embedder, name)

    runner = make_runner(sessions, tmp_path, CancelMidway())
    runner.heartbeat_seconds = 600  # no beat inside the chunk: the progress written after each batch sees the cancel
    assert runner.run_next("gpu") == [f"job {job_id} embed 0: stopped"]
    assert runner.run_next("gpu") == []  # neither it nor the other chunks it planned are taken
    with sessions() as session:
        assert jobs.get_job(session, job_id).status == "cancelled"
        assert jobs.topics_of(session, job_id) == []
    # Let go of, and never claimed again; the chunks planned before the cancel stay unclaimed.
    assert items_of(sessions, job_id) == [("embed", c, "ready") for c in range(3)]


def test_a_dead_workers_item_is_handed_out_again_and_the_job_resumes_from_its_last_chunk(
        sessions, tmp_path, embedder, corpus_texts, monkeypatch):
    job_id = make_job(sessions, corpus_texts, params={"generate_labels": False})
    runner = make_runner(sessions, tmp_path, embedder)
    assert runner.run_next("gpu") == [f"job {job_id} embed 0: done"]
    with transaction(sessions) as session:  # a worker takes chunk 1 and dies (kill -9: no hand-back)
        (held,) = work.claim(session, "gpu", "doomed-worker")
    assert held.chunk == 1
    assert runner.run_next("gpu") == [f"job {job_id} embed 2: done"]  # the other chunk goes on meanwhile
    assert runner.run_next("gpu") == runner.run_next("cpu") == []  # clustering waits for the dead one's chunk
    with transaction(sessions) as session:  # a live claim survives a sweep
        assert work.sweep(session, timedelta(minutes=1)) == {}
    with transaction(sessions) as session:  # two minutes of silence, by the database's clock
        session.execute(update(WorkItem).where(WorkItem.id == held.id)
                        .values(heartbeat_at=work.db_now(session) - timedelta(minutes=2)))
    with transaction(sessions) as session:
        assert work.sweep(session, timedelta(minutes=1)) == {"gpu": 1}

    import worker.stages as stages_module

    embedded = []
    real_embed = stages_module.embed
    monkeypatch.setattr(stages_module, "embed", lambda texts, *a, **k: embedded.append(len(texts)) or real_embed(texts, *a, **k))
    drive(runner, sessions, job_id)
    assert embedded == [60]  # chunk 1 only: chunks 0 and 2 were not embedded again
    with sessions() as session:
        job = jobs.get_job(session, job_id)
        assert job.status == "succeeded" and job.attempts == 1
        assert session.scalar(select(func.count()).select_from(WorkItem).where(WorkItem.job_id == job_id)) == 5  # 3 chunks, cluster, save: once each
    # The dead worker's claim is void: its late answer changes nothing.
    with transaction(sessions) as session:
        assert not work.complete(session, held, 1.0, [("cluster", 0)])


def test_a_job_whose_worker_dies_three_times_fails_instead_of_looping(sessions, tmp_path):
    job_id = make_job(sessions)
    for _ in range(work.MAX_DEATHS):
        with transaction(sessions) as session:
            assert work.claim(session, "gpu", "doomed-worker")
        with transaction(sessions) as session:  # it restarts under its name: what it held died with it
            assert work.release(session, worker="doomed-worker", died=True) == 1
    with sessions() as session:
        job = jobs.get_job(session, job_id)
    assert job.status == "failed" and "died 3 times" in job.error and job.attempts == 3
    assert make_runner(sessions, tmp_path, None).run_next("gpu") == []


def test_a_graceful_stop_hands_work_back_without_counting_a_death(sessions, tmp_path):
    job_id = make_job(sessions)
    with transaction(sessions) as session:
        (held,) = work.claim(session, "gpu", "worker-1")
    with transaction(sessions) as session:
        assert work.release(session, token=held.token, died=False) == 1
    with sessions() as session:
        assert jobs.get_job(session, job_id).attempts == 0
    assert items_of(sessions, job_id) == [("embed", 0, "ready")]


def test_the_next_chunk_goes_to_the_job_that_waited_longest_and_priority_goes_first(sessions):
    big = make_job(sessions, name="big")
    with transaction(sessions) as session:
        (first,) = work.claim(session, "gpu", "w")
        assert first.job_id == big
    small = make_job(sessions, name="small")  # submitted while the big job's first chunk runs
    with transaction(sessions) as session:
        assert work.complete(session, first, 1.0, [("embed", 1)])  # the big job's next chunk is ready now
    urgent = make_job(sessions, name="urgent")
    with transaction(sessions) as session:
        session.execute(update(jobs.Job).where(jobs.Job.id == urgent).values(priority=5))
    order = []
    for _ in range(3):
        with transaction(sessions) as session:
            (item,) = work.claim(session, "gpu", "w")
            order.append(item.job_id)
    assert order == [urgent, small, big]


def test_label_items_of_several_jobs_go_to_the_labeler_as_one_batch(sessions, tmp_path, embedder, corpus_texts):
    labeler = ScriptedLabeler()
    runner = make_runner(sessions, tmp_path, embedder, labeler, chunking=Chunking(1000, 50, 4))
    ids = [make_job(sessions, corpus_texts[k::2], params={"min_topic_size": 10}) for k in range(2)]
    for _ in range(2):  # both jobs embedded and clustered: their label items wait together
        runner.run_next("gpu")
        runner.run_next("cpu")
    assert runner.run_next("gpu") == [f"job {ids[0]} label 0: done", f"job {ids[1]} label 0: done"]
    assert len(labeler.calls) == 1
    assert len(labeler.calls[0]) == sum(len(_labels(runner, i)) for i in ids)  # every topic of both jobs
    for job_id in ids:
        drive(runner, sessions, job_id)
        with sessions() as session:
            topics = jobs.topics_of(session, job_id)
        assert len({t.label for t in topics}) == len(topics) and all(t.label_source == "llm" for t in topics)


def _labels(runner, job_id):
    from worker import artifacts

    return artifacts.get_labels(runner.store, job_id, 1)


def test_a_cancel_check_between_umap_epochs_stops_the_fit():
    """UMAP has no callback: its epoch bar's refreshes call the check, whose exception ends the fit."""
    from worker.pipeline.reduce import fit_umap
    from worker.claims import JobCancelled

    vectors = np.random.default_rng(0).normal(size=(200, 16)).astype(np.float32)
    calls = []

    def check():
        calls.append(True)
        raise JobCancelled("cancelled while reducing")

    with pytest.raises(JobCancelled):
        fit_umap(vectors, check=check)
    assert len(calls) == 1
    # The stopped fit left nothing held: a fit on another thread (a worker's next job) runs to its end.
    # (tqdm's refresh keeps its process-wide lock when the bar raises; a worker then hung on its next fit.)
    later: list = []
    thread = threading.Thread(target=lambda: later.append(fit_umap(vectors)), daemon=True)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive() and later[0][1].shape == (200, 5)
    _, reduced = fit_umap(vectors, check=lambda: None)  # a check that passes changes nothing
    _, unchecked = fit_umap(vectors)
    assert np.array_equal(reduced, unchecked)


def test_a_database_error_while_saving_hands_the_item_back_and_a_failed_progress_write_is_not_fatal(
        sessions, tmp_path, embedder, corpus_texts, monkeypatch):
    from sqlalchemy.exc import OperationalError

    import worker.stages as stages_module

    job_id = make_job(sessions, corpus_texts[:90], params={"generate_labels": False})
    real_progress, real_finish = jobs.report_progress, jobs.finish
    failures = {"progress": 3, "finish": 1}

    def flaky(name, real):
        def call(*args, **kwargs):
            if failures[name]:
                failures[name] -= 1
                raise OperationalError("UPDATE jobs ...", {}, Exception("server closed the connection"))
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(stages_module.jobs, "report_progress", flaky("progress", real_progress))
    monkeypatch.setattr(stages_module.jobs, "finish", flaky("finish", real_finish))
    outcomes = drive(make_runner(sessions, tmp_path, embedder), sessions, job_id)
    assert f"job {job_id} save 0: released" in outcomes and outcomes[-1] == f"job {job_id} save 0: done"
    with sessions() as session:
        job = jobs.get_job(session, job_id)
        assert job.status == "succeeded" and job.attempts == 0 and len(jobs.topics_of(session, job_id)) == job.n_topics
