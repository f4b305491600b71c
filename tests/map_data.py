"""Synthetic finished jobs for the document map (its browser tests and bench/map.py): clustered 2-D coordinates as
UMAP draws them, documents with words of their topic, labels and themes, written through shared.jobs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import update

from shared import jobs, work
from shared.db import transaction
from shared.models import Job, WorkItem, utcnow

WORDS = (
    "river bank loan credit tax budget market stock bond price court judge law vote party election virus vaccine "
    "doctor patient hospital drug school teacher exam student campus music guitar album concert film actor cinema "
    "novel poem author library museum painting garden flower seed harvest farm cattle weather storm rain flood "
    "ocean ship harbour train station airport flight engine battery solar wind energy fuel network server protocol "
    "router password software compiler kernel database query chess football tennis league coach stadium recipe "
    "bread cheese coffee wine kitchen oven hotel beach mountain hiking camera lens photo galaxy planet telescope "
    "rocket orbit atom molecule enzyme protein gene cell fossil volcano glacier desert forest insect bird whale"
).split()


@dataclass(frozen=True)
class MapData:
    """A synthetic map: float32[n] ``x``, ``y``; int32[n] ``topic`` (-1 outlier); per topic its keywords."""

    x: np.ndarray
    y: np.ndarray
    topic: np.ndarray
    keywords: list[list[str]]

    @property
    def n(self) -> int:
        return len(self.topic)


def clustered_map(n: int, n_topics: int, seed: int = 0, outlier_share: float = 0.12) -> MapData:
    """``n`` documents in ``n_topics`` Gaussian clusters of unequal sizes (and spreads) on a 0..100 plane, and
    ``outlier_share`` of them scattered over it."""
    rng = np.random.default_rng(seed)
    n_outliers = int(n * outlier_share)
    shares = rng.dirichlet(np.full(n_topics, 1.5))
    sizes = np.maximum(1, np.floor(shares * (n - n_outliers)).astype(int))
    sizes[0] += n - n_outliers - sizes.sum()
    centres = rng.uniform(8, 92, size=(n_topics, 2))
    spreads = rng.uniform(1.2, 3.5, size=n_topics)
    topic = np.concatenate([np.full(s, t, dtype=np.int32) for t, s in enumerate(sizes)] +
                           [np.full(n_outliers, -1, dtype=np.int32)])
    points = np.concatenate([rng.normal(centres[t], spreads[t], size=(s, 2)) for t, s in enumerate(sizes)] +
                            [rng.uniform(0, 100, size=(n_outliers, 2))])
    order = rng.permutation(n)  # documents arrive in no particular order
    keywords = [list(rng.choice(WORDS, size=5, replace=False)) for _ in range(n_topics)]
    return MapData(points[order, 0].astype(np.float32), points[order, 1].astype(np.float32), topic[order], keywords)


def label_of(data: MapData, topic: int) -> str:
    return f"{data.keywords[topic][0].title()} and {data.keywords[topic][1]}"


def texts_of(data: MapData, seed: int = 0) -> list[tuple[str, str]]:
    """``(text, title)`` of every document: words of its topic mixed with any words (outliers: any words only)."""
    rng = np.random.default_rng(seed + 1)
    out = []
    for i, t in enumerate(data.topic.tolist()):
        pool = data.keywords[t] * 3 + WORDS[: 20] if t >= 0 else WORDS
        words = [str(w) for w in rng.choice(pool, size=int(rng.integers(12, 40)))]
        out.append((" ".join(words).capitalize() + ".", f"Document {i}: {words[0]} {words[1]}"))
    return out


def write_finished_job(sessions, data: MapData, documents: list[tuple[str, str]] | None = None,
                       name: str = "map job") -> str:
    """A succeeded job holding ``data`` with its topics (LLM-style labels) and, from 8 topics, themes of about four
    topics each; written like tests/factories.py writes one (its stages done by a test worker)."""
    documents = documents if documents is not None else texts_of(data)
    n_topics = len(data.keywords)
    with transaction(sessions) as session:
        job_id = jobs.create_job(session, name=name, documents=documents, params={}).id
        for stage in work.STAGES:
            work.add_item(session, job_id, stage)
        session.execute(update(WorkItem).where(WorkItem.job_id == job_id)
                        .values(status="done", seconds=1.0, worker="test-worker"))
        session.execute(update(Job).where(Job.id == job_id).values(status="running", started_at=utcnow()))
    n_themes = n_topics // 4 if n_topics >= 8 else 0
    theme_of = {t: t % n_themes for t in range(n_topics)} if n_themes else {}
    sizes = np.bincount(data.topic[data.topic >= 0], minlength=n_topics)
    topics = [
        jobs.TopicRow(t, int(sizes[t]), label_of(data, t), "llm", data.keywords[t], {"KeyBERT": [], "MMR": []},
                      np.flatnonzero(data.topic == t)[:3].tolist(), theme=theme_of.get(t))
        for t in range(n_topics)
    ]
    themes = []
    for theme in range(n_themes):
        members = sorted((t for t in range(n_topics) if theme_of[t] == theme), key=lambda t: -sizes[t])
        themes.append(jobs.ThemeRow(theme, f"Theme of {data.keywords[members[0]][2]}", "llm", members,
                                    int(sizes[members].sum())))
    with transaction(sessions) as session:
        assert jobs.finish(
            session, job_id, topics=topics, themes=themes, n_outliers=int((data.topic < 0).sum()),
            arrays={"topic": data.topic, "topic_original": data.topic, "x": data.x, "y": data.y},
        )
    return job_id
