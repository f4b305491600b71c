"""End to end, as a user runs it: `topicq up` (its own Redis, migrations, a real Celery worker with the real
bundled embedding model and LLM, the web server), a corpus submitted over HTTP, the topics read back,
then Ctrl-C, a restart, and the results still there."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest
from markupsafe import escape
from sklearn.metrics import adjusted_mutual_info_score

from cli.local_service import LocalService, service_env
from cli.redis_server import free_port
from tests.conftest import POSTGRES_URL, fresh_database, read_corpus
from worker.devices import cpu_has_amx

pytestmark = pytest.mark.e2e


@pytest.fixture
def env(tmp_path):
    """On PostgreSQL when a server answers (production's database), else on SQLite: once, not on both, since the
    browser journey (test_journey.py) runs the whole service on SQLite too."""
    with fresh_database("postgresql" if POSTGRES_URL else "sqlite", tmp_path) as url:
        yield service_env(tmp_path / "var", free_port(), url)


def test_submit_watch_and_browse_llm_labelled_topics(env, tmp_path):
    records = read_corpus("news_sections.jsonl", every=5, limit=300)
    service = LocalService(env, tmp_path / "up.log")
    try:
        service.wait_ready()
        # The worker says which label backend it chose for this CPU, and why.
        # `make run` starts one worker per queue; the accelerator one labels, the CPU one loads no LLM.
        workers = {tuple(w["queues"]): w for w in service.get("/healthz").json()["workers"]}
        assert set(workers) == {("gpu",), ("cpu",)}, workers
        worker = workers[("gpu",)]
        assert "labels" not in workers[("cpu",)] and workers[("cpu",)]["llm"] is None
        expected = "transformers" if cpu_has_amx() else "llama.cpp"
        assert worker["labels"]["backend"] == expected and worker["labels"]["reason"], worker
        # A pinned topic size keeps the job to about ten topics (the default finds about 17 here): enough for
        # themes above them, and fewer labels to wait for on a slow CPU.
        response = service.post(
            "/api/v1/jobs",
            json={"name": "news", "documents": [{"text": r["text"], "title": r["id"]} for r in records],
                  "params": {"min_topic_size": 7}},
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]

        seen = []

        def finished():
            job = service.get(f"/api/v1/jobs/{job_id}").json()
            seen.append((job["stage"], job["progress"]))
            return job if job["status"] in ("succeeded", "failed", "cancelled") else None

        job = service.wait_until(finished, 900, "the job to finish")
        assert job["status"] == "succeeded", job
        progress = [p for _, p in seen]
        assert progress == sorted(progress), "progress went backwards"
        assert {"embedding", "labelling"} <= {stage for stage, _ in seen}
        assert len({p for p in progress if 0 < p < 1}) >= 3, f"the progress bar barely moved: {seen}"

        result = service.get(f"/api/v1/jobs/{job_id}/topics").json()
        topics = result["topics"]
        assert 3 <= len(topics) == job["n_topics"]
        documents = service.get(f"/api/v1/jobs/{job_id}/documents?limit=1000").json()
        assert documents["total"] == len(records) == len(documents["documents"])
        assigned = Counter(d["topic"] for d in documents["documents"])
        assert assigned[-1] == result["n_outliers"] == job["n_outliers"]
        assert {t["topic"]: t["size"] for t in topics} == {k: v for k, v in assigned.items() if k >= 0}

        assert job["scores"]["outlier_share"] == pytest.approx(result["n_outliers"] / len(records), abs=1e-4)
        assert 0 < job["scores"]["diversity"] <= 1 and job["scores"]["coherence_npmi"] > 0
        themes = service.get(f"/api/v1/jobs/{job_id}/themes").json()["themes"]
        assert len(topics) >= 8, "too few topics for themes: pick a smaller pinned min_topic_size"
        assert sorted(t for theme in themes for t in theme["topics"]) == sorted(t["topic"] for t in topics)
        assert all(theme["label"] for theme in themes) and len({th["label"] for th in themes}) == len(themes)
        assert {t["theme"] for t in topics} == set(range(len(themes)))

        llm_labels = [t for t in topics if t["label_source"] == "llm"]
        assert len(llm_labels) >= 0.8 * len(topics)
        assert len({t["label"].lower() for t in topics}) == len(topics), "labels should tell topics apart"
        for topic in topics:
            assert len(topic["keywords"]) == 10 and topic["representations"]["KeyBERT"] and topic["representations"]["MMR"]
            assert 1 <= len(topic["label"].split()) <= 10 and "\n" not in topic["label"]
            assert topic["representative_docs"]
        # A label is about its topic: it shares a word stem with the topic's keywords or representative documents.
        related = [t for t in llm_labels if _shares_stem(t["label"], " ".join(t["keywords"] + t["representative_docs"]))]
        assert len(related) >= 0.7 * len(llm_labels), [(t["label"], t["keywords"]) for t in llm_labels]
        # Topics follow the news sections a reader sees, far beyond chance (shuffled topics score about 0 +- 0.02).
        sections = [records[d["index"]]["label"] for d in documents["documents"]]
        agreement = adjusted_mutual_info_score(sections, [d["topic"] for d in documents["documents"]])
        assert agreement >= 0.1, agreement

        page = service.get(f"/jobs/{job_id}").text
        assert all(str(escape(t["label"])) in page for t in topics)
        csv_text = service.get(f"/api/v1/jobs/{job_id}/topics.csv").text
        assert len(csv_text.splitlines()) >= len(topics) + 1

        # The CLI: the same corpus as a .txt file, without labels; its embeddings come from the cache.
        corpus_file = tmp_path / "news.txt"
        corpus_file.write_text("\n".join(" ".join(r["text"].split()) for r in records))
        cli = [sys.executable, "-m", "cli.main"]
        submitted = subprocess.run([*cli, "submit", str(corpus_file), "--no-labels", "--wait"], env=env,
                                   capture_output=True, text=True, timeout=600)
        assert submitted.returncode == 0, submitted.stderr
        assert f"{len(records)} documents queued" in submitted.stdout
        assert f"outliers of {len(records)} documents" in submitted.stdout and "100%" in submitted.stdout
        status = subprocess.run([*cli, "status", job_id], env=env, capture_output=True, text=True, timeout=60)
        assert f"{job_id}  succeeded  stage=done  100%" in status.stdout

        # Re-label with a custom prompt, without re-clustering: new labels, the old ones kept in the history.
        # (keywords only: a short prompt, so a slow CPU labels it in a few seconds a topic)
        prompt = "Keywords: [KEYWORDS]\nGive this news topic a headline of at most four words."
        run = service.post(f"/api/v1/jobs/{job_id}/labels", json={"prompt": prompt}).json()
        runs = service.wait_until(
            lambda: (r := service.get(f"/api/v1/jobs/{job_id}/labels").json()["runs"])[0]["status"] in ("succeeded", "failed") and r,
            600, "the re-label run")
        assert runs[0]["id"] == run["id"] and runs[0]["status"] == "succeeded"
        assert runs[0]["previous_labels"] == {str(t["topic"]): {"label": t["label"], "label_source": t["label_source"]} for t in topics}
        relabelled = service.get(f"/api/v1/jobs/{job_id}/topics").json()
        assert {str(t["topic"]): t["label"] for t in relabelled["topics"]} == {k: v["label"] for k, v in runs[0]["labels"].items()}
        assert [t["keywords"] for t in relabelled["topics"]] == [t["keywords"] for t in topics]
        assert sum(t["label_source"] == "llm" for t in relabelled["topics"]) >= 0.8 * len(topics)
        assert len({t["label"].lower() for t in relabelled["topics"]}) == len(topics)
        result = relabelled
    finally:
        assert service.stop(), "processes of `topicq up` survived SIGTERM to its process group"

    # A second `make run` keeps what the first one finished.
    again = LocalService(env, tmp_path / "up2.log")
    try:
        listing = again.wait_until(lambda: again.get("/api/v1/jobs").json(), 120, "the web server to restart")
        assert [j["status"] for j in listing["jobs"]] == ["succeeded", "succeeded"]
        assert listing["jobs"][1]["id"] == job_id
        assert again.get(f"/api/v1/jobs/{job_id}/topics").json() == result
    finally:
        assert again.stop(), "processes of `topicq up` survived SIGTERM to its process group"


def _shares_stem(label: str, text: str) -> bool:
    words = {w.lower().strip(".,:;'\"()") for w in text.split()}
    stems = {w[:5] for w in words if len(w) >= 4}
    return any(w.lower().strip(".,:;'\"()")[:5] in stems for w in label.split() if len(w) >= 4)
