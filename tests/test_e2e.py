"""End to end, as a user runs it: `topicq up` (its own Redis, migrations, a real Celery worker with the real
bundled embedding model and LLM, the web server), a corpus submitted over HTTP, the topics read back,
then Ctrl-C, a restart, and the results still there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from sklearn.metrics import adjusted_mutual_info_score

from cli.redis_server import free_port
from tests.conftest import read_corpus

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


class Service:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "up"],
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, as a terminal gives `make run`
            )
        self.base = f"http://127.0.0.1:{env['TOPICQ_PORT']}"

    def wait_until(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"topicq up exited early:\n{self.log.read_text()[-3000:]}"
            try:
                value = predicate()
                if value:
                    return value
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log.read_text()[-3000:]}")

    def health(self) -> dict:
        return requests.get(f"{self.base}/healthz", timeout=5).json()

    def stop_like_ctrl_c(self) -> None:
        """SIGTERM to the whole process group; nothing it started may survive."""
        group = os.getpgid(self.process.pid)
        os.killpg(group, signal.SIGTERM)
        self.process.wait(timeout=60)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        os.killpg(group, signal.SIGKILL)
        raise AssertionError("processes of `topicq up` survived SIGTERM")


@pytest.fixture
def service_env(database_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOPICQ_")}
    env.update(
        TOPICQ_DATA_DIR=str(tmp_path / "var"),
        TOPICQ_DATABASE_URL=database_url,
        TOPICQ_PORT=str(free_port()),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def test_submit_watch_and_browse_llm_labelled_topics(service_env, tmp_path):
    records = read_corpus("news_sections.jsonl", every=5, limit=300)
    service = Service(service_env, tmp_path / "up.log")
    try:
        service.wait_until(lambda: service.health()["worker_ready"], 300, "the worker to load its models")

        response = requests.post(
            f"{service.base}/api/v1/jobs",
            json={"name": "news", "documents": [{"text": r["text"], "title": r["id"]} for r in records]},
            timeout=30,
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]

        seen = []

        def finished():
            job = requests.get(f"{service.base}/api/v1/jobs/{job_id}", timeout=5).json()
            seen.append((job["stage"], job["progress"]))
            return job if job["status"] in ("succeeded", "failed", "cancelled") else None

        job = service.wait_until(finished, 900, "the job to finish")
        assert job["status"] == "succeeded", job
        progress = [p for _, p in seen]
        assert progress == sorted(progress), "progress went backwards"
        assert {"embedding", "labelling"} <= {stage for stage, _ in seen}
        assert len({p for p in progress if 0 < p < 1}) >= 3, f"the progress bar barely moved: {seen}"

        result = requests.get(f"{service.base}/api/v1/jobs/{job_id}/topics", timeout=10).json()
        topics = result["topics"]
        assert 3 <= len(topics) == job["n_topics"]
        documents = requests.get(f"{service.base}/api/v1/jobs/{job_id}/documents?limit=1000", timeout=10).json()
        assert documents["total"] == len(records) == len(documents["documents"])
        assigned = Counter(d["topic"] for d in documents["documents"])
        assert assigned[-1] == result["n_outliers"] == job["n_outliers"]
        assert {t["topic"]: t["size"] for t in topics} == {k: v for k, v in assigned.items() if k >= 0}

        llm_labels = [t for t in topics if t["label_source"] == "llm"]
        assert len(llm_labels) >= 0.8 * len(topics)
        assert len({t["label"].lower() for t in topics}) >= 0.8 * len(topics), "labels should tell topics apart"
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

        page = requests.get(f"{service.base}/jobs/{job_id}", timeout=10).text
        assert topics[0]["label"].replace("'", "&#39;").replace("&", "&amp;")[:20] in page or topics[0]["label"][:20] in page
        csv_text = requests.get(f"{service.base}/api/v1/jobs/{job_id}/topics.csv", timeout=10).text
        assert len(csv_text.splitlines()) >= len(topics) + 1
    finally:
        if service.process.poll() is None:
            service.stop_like_ctrl_c()

    # A second `make run` keeps what the first one finished.
    again = Service(service_env, tmp_path / "up2.log")
    try:
        listing = again.wait_until(
            lambda: requests.get(f"{again.base}/api/v1/jobs", timeout=5).json(), 120, "the web server to restart"
        )
        assert [j["id"] for j in listing["jobs"]] == [job_id] and listing["jobs"][0]["status"] == "succeeded"
        assert requests.get(f"{again.base}/api/v1/jobs/{job_id}/topics", timeout=10).json() == result
    finally:
        again.stop_like_ctrl_c()


def _shares_stem(label: str, text: str) -> bool:
    words = {w.lower().strip(".,:;'\"()") for w in text.split()}
    stems = {w[:5] for w in words if len(w) >= 4}
    return any(w.lower().strip(".,:;'\"()")[:5] in stems for w in label.split() if len(w) >= 4)
