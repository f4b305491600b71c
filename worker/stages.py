"""Runs one work item of a job (or a batch of label items of several jobs): claim it, read its inputs from the
database and the artifact store, run the pure pipeline stage, write its outputs, and mark it done together
with making the next item ready.

Celery knows nothing of this module and this module knows nothing of Celery, so tests drive it directly on a
real database. Every way out of a claimed item leaves it done, back in the queue, or its job finished.

A stage that runs out of memory (a ``MemoryError``: an allocation refused under the worker's memory limit) fails
its job with a message saying so, and the worker frees what the stage held and takes the next item. A worker the
kernel kills for memory dies instead; its item is retried, and after ``work.MAX_DEATHS`` deaths its job fails.
"""

from __future__ import annotations

import gc
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from shared import jobs, work
from shared.db import transaction
from shared.models import WorkItem
from shared.schemas import JobParams
from shared.storage import ArtifactStore, array_shape, load_array, load_rows, map_key, model_key, save_array
from worker import artifacts
from worker.claims import ChunkProgress, Claim, ClaimLost, JobCancelled, Progress
from worker.pipeline.embed import embed
from worker.pipeline.export import model_archive
from worker.pipeline.faithfulness import sample_documents
from worker.pipeline.label import LabelInput, LabelRequest, label_batch, label_topics
from worker.pipeline.levels import label_levels
from worker.pipeline.reask import FaithfulLabels
from worker.pipeline.run import (
    Clusters, PipelineConfig, PipelineResult, assemble, cluster_stage, faithful_labels, label_inputs, label_steps,
)
from worker.pipeline.static_map import render_map
from worker.pipeline.themes import groups
from worker.results import result_rows

log = logging.getLogger(__name__)

USER_SAFE_ERROR = "the topic pipeline failed on this corpus; the worker log has the details"
STAGE_WORDS = {"embed": "embedding", "cluster": "clustering", "label": "labelling", "save": "saving"}


def out_of_memory_message(stage: str, exc: MemoryError) -> str:
    """What a job that ran out of memory in ``stage`` says, e.g. "out of memory while clustering: Unable to
    allocate 61.0 MiB for an array ...; ..."."""
    detail = str(exc) or "an allocation failed"
    return (f"out of memory while {STAGE_WORDS.get(stage, stage)}: {detail}; give the worker more memory or "
            "submit fewer documents")


@dataclass(frozen=True)
class Chunking:
    embed_documents: int = 2000  # documents per embedding item
    label_topics: int = 8  # topics per label item
    label_jobs: int = 4  # label items of different jobs taken into one batch
    embed_window: int = 4  # a job's embedding items ready or running at once: that many workers share one job


@dataclass
class StageRunner:
    factory: sessionmaker[Session]
    store: ArtifactStore
    embedding_model_name: str  # names the embedding cache
    embedding_model_ref: str  # what the exported model names as its embedding model (a hub id or a path)
    config: PipelineConfig
    embedder: Callable[[], object]  # loaded once per process
    labeler: Callable[[], object]
    worker: str  # this worker's name, recorded on what it claims
    chunking: Chunking = Chunking()
    heartbeat_seconds: float = 5.0
    on_claim: Callable[[list[WorkItem]], None] = lambda items: None  # what this worker holds now (empty: nothing)
    ring: Callable[[str], None] = lambda queue: None  # tells the workers of a queue that an item is ready

    def run_next(self, queue: str) -> list[str]:
        """Claim and run the fairest ready item of ``queue`` (label items: a batch across jobs); returns one
        line per item saying how it ended, empty when nothing was ready (a duplicate doorbell)."""
        with transaction(self.factory) as session:
            items = work.claim(session, queue, self.worker, batch_stage="label", batch=self.chunking.label_jobs)
        if not items:
            return []
        self.on_claim(items)
        started = time.monotonic()
        try:
            with Claim(self.factory, items, self.heartbeat_seconds) as claim:
                if items[0].stage == "label":
                    return self._label(items, claim)
                return [self._one(items[0], claim, started)]
        finally:
            self.on_claim([])

    # -- one item ---------------------------------------------------------------------------------------

    def _one(self, item: WorkItem, claim: Claim, started: float) -> str:
        what = f"job {item.job_id} {item.stage} {item.chunk}"
        try:
            step = {"embed": self._embed, "cluster": self._cluster, "save": self._save}[item.stage]
            done = step(item, claim, started)
        except (JobCancelled, ClaimLost) as stop:
            log.info("%s: stopped (%s)", what, type(stop).__name__)
            self._let_go(item)
            return f"{what}: stopped"
        except DBAPIError:
            return self._database_error(item, what)
        except MemoryError as exc:
            return self._out_of_memory([item], what, exc)
        except Exception:
            log.exception("%s failed", what)
            self._fail(item.job_id)
            return f"{what}: failed"
        return f"{what}: {'done' if done else 'superseded'}"

    def _embed(self, item: WorkItem, claim: Claim, started: float) -> bool:
        """One chunk of the job's documents embedded into its own artifact; the job's first chunk also names the
        cache entry and plans the other chunks, for any accelerator worker to take."""
        with transaction(self.factory) as session:
            job = jobs.get_job(session, item.job_id)
            n, key = job.n_documents, job.embedding_key
            plan = work.embedding_plan(session, item.job_id)
        if plan is None:
            key, plan = self._plan(item, claim, n)
        if plan.chunks == 1 and self._cached(key, n):  # the same documents embedded before: straight on
            Progress(self.factory, claim, item.job_id)("embedding", n, n)
            return self._complete_chunk(item, started)
        first, stop = plan.bounds(item.chunk)
        with transaction(self.factory) as session:
            texts = jobs.load_documents(session, item.job_id, first, stop)
        progress = ChunkProgress(self.factory, claim, item.job_id, plan)
        vectors = embed(texts, self.embedder(), self.config.embedding_batch_size, progress,
                        self.config.embedding_windows)
        save_array(self.store, artifacts.embedding_chunk_key(item.job_id, item.chunk), vectors)
        return self._complete_chunk(item, started)

    def _plan(self, item: WorkItem, claim: Claim, n: int) -> tuple[str, work.ChunkPlan]:
        """The cache key of the job's corpus and its chunk plan: one chunk when the cache has its embeddings."""
        key = artifacts.embedding_key(self.embedding_model_name, self.config.embedding_windows,
                                      self._texts(item.job_id, n, claim))
        chunks = 1 if self._cached(key, n) else max(1, math.ceil(n / self.chunking.embed_documents))
        with transaction(self.factory) as session:
            planned = work.plan_embedding(session, item.job_id, key, chunks, self.chunking.embed_window)
            key, plan = jobs.get_job(session, item.job_id).embedding_key, work.embedding_plan(session, item.job_id)
        if planned:
            for _ in range(min(plan.chunks, self.chunking.embed_window) - 1):
                self._ring("gpu")
        return key, plan

    def _texts(self, job_id: str, n: int, claim: Claim) -> Iterator[str]:
        """The job's texts in order, read ``jobs.READ_BATCH`` at a time by key, never all at once."""
        with transaction(self.factory) as session:
            for texts in jobs.iter_documents(session, job_id, 0, n, batch=jobs.READ_BATCH):
                claim.check(job_id)
                yield from texts

    def _cached(self, key: str, n: int) -> bool:
        """Whether the cache holds embeddings of all ``n`` documents under ``key``; reads the .npy header only."""
        shape = array_shape(self.store, key)
        return shape is not None and len(shape) == 2 and shape[0] == n

    def _embeddings(self, job_id: str, key: str, n: int) -> np.ndarray:
        """The job's embeddings (n, dim): the cache entry, or else its chunks filled one at a time into one array
        that becomes the cache entry (never the chunks and their concatenation at once). The chunk artifacts
        are deleted once the entry exists."""
        embeddings = load_array(self.store, key) if self._cached(key, n) else None
        if embeddings is None:
            with transaction(self.factory) as session:
                plan = work.embedding_plan(session, job_id)
            for chunk in range(plan.chunks):
                start, stop = plan.bounds(chunk)
                part = load_array(self.store, artifacts.embedding_chunk_key(job_id, chunk))
                if part is None or len(part) != stop - start:
                    raise LookupError(f"job {job_id}: embedding chunk {chunk} is missing from the artifact store")
                if embeddings is None:
                    embeddings = np.empty((n, part.shape[1]), dtype=part.dtype)
                embeddings[start:stop] = part
                del part
            save_array(self.store, key, embeddings)
        self.store.delete_prefix(embedding_chunks_prefix(job_id))
        return embeddings

    def _cluster(self, item: WorkItem, claim: Claim, started: float) -> bool:
        with transaction(self.factory) as session:
            job = jobs.get_job(session, item.job_id)
            params, key = JobParams.model_validate(job.params), job.embedding_key
            texts = jobs.load_documents(session, item.job_id)
        if key is None:
            raise LookupError(f"job {item.job_id}: it reached clustering without an embedding key")
        embeddings = self._embeddings(item.job_id, key, len(texts))
        progress = Progress(self.factory, claim, item.job_id)
        clusters = cluster_stage(texts, embeddings, params, self.embedder(), self.config, progress, progress.check)
        artifacts.put_clusters(self.store, item.job_id, clusters)
        if clusters.topic_model is not None:
            self.store.put(model_key(item.job_id), model_archive(clusters.topic_model, self.embedding_model_ref))
        labelled = params.generate_labels and len(clusters.representations) > 0
        if not labelled:
            return self._complete(item, time.monotonic() - started, [("save", 0)])
        # Done, the next item and the label plan (what the job's labelling estimate counts down from), all or nothing.
        return self._complete(item, time.monotonic() - started, [("label", 0)], also=lambda session: jobs.plan_labels(
            session, item.job_id, len(clusters.representations), groups(clusters.theme_of),
            groups(clusters.domain_of)))

    def _save(self, item: WorkItem, claim: Claim, started: float) -> bool:
        with transaction(self.factory) as session:
            params = JobParams.model_validate(jobs.get_job(session, item.job_id).params)
        Progress(self.factory, claim, item.job_id)("saving", 0, 1)
        clusters = artifacts.get_clusters(self.store, item.job_id)
        faithful = None
        if params.generate_labels:
            labels = artifacts.get_labels(self.store, item.job_id, self._label_chunks(clusters))
            themes = artifacts.get_themes(self.store, item.job_id)
            domains = artifacts.get_domains(self.store, item.job_id)
            faithful = artifacts.get_faithful(self.store, item.job_id)
        else:  # keyword labels, which need no LLM (and are not scored: that would need the embedding model)
            labels = label_topics([LabelInput(r.keywords, []) for r in clusters.representations], None, doc_budget=0)
            levels = label_levels(clusters.representations, labels, clusters.theme_of, clusters.domain_of, None)
            themes, domains = levels.themes, levels.domains
        result = assemble(clusters, labels, themes, np.zeros((0, 0), dtype=np.float32), faithful=faithful,
                          domains=domains)
        self._static_maps(item.job_id, result)
        with transaction(self.factory) as session:
            if not work.complete(session, item, time.monotonic() - started):
                return False
            jobs.finish(session, item.job_id, **result_rows(result, params))
        return True

    def _static_maps(self, job_id: str, result: PipelineResult) -> None:
        """The job's map as PNG and SVG, with the labels it finishes with; a map that fails to render is logged
        and missing from the downloads, never a failed job."""
        labels = {t.representation.topic: t.label.text for t in result.topics}
        try:
            for fmt in ("png", "svg"):
                self.store.put(map_key(job_id, fmt), render_map(result.coords, result.doc_topics, labels, fmt=fmt))
        except Exception:
            log.exception("job %s: the static map could not be rendered; the job goes on without it", job_id)

    # -- labels, batched across jobs --------------------------------------------------------------------

    def _label_chunks(self, clusters: Clusters) -> int:
        return math.ceil(len(clusters.representations) / self.chunking.label_topics)

    def _label(self, items: list[WorkItem], claim: Claim) -> list[str]:
        """Topic-label chunks of several jobs in one labeller batch; a job's last label item (faithfulness, then
        themes) alone."""
        outcomes, batch = [], []
        for item in items:
            what = f"job {item.job_id} label {item.chunk}"
            try:
                clusters = artifacts.get_clusters(self.store, item.job_id)
                chunks = self._label_chunks(clusters)
                if item.chunk >= chunks:  # the job's theme labels, on their own
                    outcomes.append(f"{what}: {self._levels(item, claim, clusters, chunks, time.monotonic())}")
                    continue
                batch.append((item, clusters, chunks, self._label_request(item, claim, clusters, chunks)))
            except (JobCancelled, ClaimLost):
                self._let_go(item)
                outcomes.append(f"{what}: stopped")
            except DBAPIError:
                outcomes.append(self._database_error(item, what))
            except MemoryError as exc:
                outcomes.append(self._out_of_memory([item], what, exc))
            except Exception:
                log.exception("%s failed", what)
                self._fail(item.job_id)
                outcomes.append(f"{what}: failed")
        if not batch:
            return outcomes
        batch_started = time.monotonic()
        try:
            results = label_batch([request for *_, request in batch], self.labeler(),
                                  doc_budget=self.config.doc_tokens, doc_count=self.config.doc_count)
        except (JobCancelled, ClaimLost):
            # One job of the batch stopped: the others' items go back to the queue, unharmed.
            with transaction(self.factory) as session:
                work.release(session, token=batch[0][0].token, died=False)
            return outcomes + [f"job {item.job_id} label {item.chunk}: released" for item, *_ in batch]
        except MemoryError as exc:
            return outcomes + [self._out_of_memory([item for item, *_ in batch], f"label batch of {len(batch)} jobs",
                                                   exc)]
        except Exception:
            log.exception("label batch of %d jobs failed", len(batch))
            for item, *_ in batch:
                self._fail(item.job_id)
            return outcomes + [f"job {item.job_id} label {item.chunk}: failed" for item, *_ in batch]
        # Each job's item is charged its share of the batch's time, so a job's stage times add up to wall time.
        share = (time.monotonic() - batch_started) / len(batch)
        for (item, clusters, chunks, _request), labels in zip(batch, results):
            artifacts.put_labels(self.store, item.job_id, item.chunk, labels)
            done = self._complete(item, share, [("label", item.chunk + 1)])  # after the last: faithfulness
            outcomes.append(f"job {item.job_id} label {item.chunk}: {'done' if done else 'superseded'}")
        return outcomes

    def _label_request(self, item: WorkItem, claim: Claim, clusters: Clusters, chunks: int) -> LabelRequest:
        size = self.chunking.label_topics
        first = item.chunk * size
        mine = clusters.representations[first : first + size]
        with transaction(self.factory) as session:
            texts = jobs.document_texts(session, item.job_id, (i for r in mine for i in r.representative_docs))
            language = _label_language(session, item.job_id)
        earlier = artifacts.get_labels(self.store, item.job_id, item.chunk)
        steps = label_steps(clusters)
        progress = Progress(self.factory, claim, item.job_id)
        return LabelRequest(
            topics=label_inputs(mine, texts),
            earlier=earlier,
            progress=lambda stage, done, _total: progress(stage, first + done, steps),
            language=language,
        )

    def _levels(self, item: WorkItem, claim: Claim, clusters: Clusters, chunks: int, started: float) -> str:
        """The job's last label item: the levels above its topic labels (``label_levels``: their faithfulness,
        unfaithful ones asked again, then its themes, then its domains)."""
        labels = artifacts.get_labels(self.store, item.job_id, chunks)
        progress = Progress(self.factory, claim, item.job_id)
        progress("labelling", len(labels), label_steps(clusters))
        with transaction(self.factory) as session:
            language = _label_language(session, item.job_id)
        levels = label_levels(clusters.representations, labels, clusters.theme_of, clusters.domain_of,
                              self.labeler(), progress, language=language,
                              score=lambda labels: self._faithfulness(item.job_id, clusters, labels, language),
                              between=lambda: claim.check(item.job_id))
        if levels.faithful is not None:
            artifacts.put_faithful(self.store, item.job_id, levels.faithful)
        artifacts.put_themes(self.store, item.job_id, levels.themes)
        artifacts.put_domains(self.store, item.job_id, levels.domains)
        return "done" if self._complete(item, time.monotonic() - started, [("save", 0)]) else "superseded"

    def _faithfulness(self, job_id: str, clusters: Clusters, labels: list,
                      language: str | None = None) -> FaithfulLabels | None:
        """The labels scored on a sample of the job's documents, read from its embeddings by rows; None (logged,
        the job goes on unscored) when its embeddings are no longer in the store."""
        ids = [r.topic for r in clusters.representations]
        picked = sample_documents(clusters.doc_topics, ids, seed=self.config.seed)
        with transaction(self.factory) as session:
            key = jobs.get_job(session, job_id).embedding_key
            texts = jobs.document_texts(session, job_id, (i for r in clusters.representations
                                                          for i in r.representative_docs))
        vectors = load_rows(self.store, key, picked) if key else None
        if vectors is None:
            log.warning("job %s: its embeddings are gone from the store; its labels are not scored", job_id)
            return None
        return faithful_labels(labels, label_inputs(clusters.representations, texts), vectors,
                               clusters.doc_topics[picked], ids, self.embedder(), self.labeler(), self.config,
                               language=language)

    # -- endings ----------------------------------------------------------------------------------------

    def _complete(self, item: WorkItem, seconds: float, then: list[tuple[str, int]],
                  also: Callable[[Session], None] | None = None) -> bool:
        """Mark ``item`` done and make ``then`` ready (with ``also`` in the same transaction, when it was done), then
        ring their queues."""
        with transaction(self.factory) as session:
            done = work.complete(session, item, seconds, then)
            if done and also is not None:
                also(session)
        for stage, _chunk in then if done else ():
            self._ring(work.QUEUE_OF[stage])
        return done

    def _complete_chunk(self, item: WorkItem, started: float) -> bool:
        with transaction(self.factory) as session:
            ready = work.complete_chunk(session, item, time.monotonic() - started)
        for stage, _chunk in ready or ():
            self._ring(work.QUEUE_OF[stage])
        return ready is not None

    def _ring(self, queue: str) -> None:
        try:
            self.ring(queue)
        except Exception as exc:  # Redis away: the sweep rings for it
            log.warning("could not ring the %s queue (%s); the sweep will", queue, exc)

    def _let_go(self, item: WorkItem) -> None:
        """A stopped item is no longer held (a no-op when the claim was already void): it neither looks
        alive nor, once silent, like a death."""
        try:
            with transaction(self.factory) as session:
                work.release(session, token=item.token, item_id=item.id, died=False)
        except DBAPIError:
            log.warning("job %s: could not let go of its %s item; the sweep will", item.job_id, item.stage)

    def _out_of_memory(self, items: list[WorkItem], what: str, exc: MemoryError) -> str:
        """The stage's allocation was refused: its jobs fail saying so (a retry would fail the same way), and the
        failed stage's frames, with the arrays they held, are freed before this worker takes the next item."""
        log.error("%s: out of memory; the job fails and this worker goes on", what, exc_info=exc)
        message = out_of_memory_message(items[0].stage, exc)
        exc.__traceback__ = None
        gc.collect()
        for item in items:
            self._fail(item.job_id, message)
        return f"{what}: failed (out of memory)"

    def _fail(self, job_id: str, message: str = USER_SAFE_ERROR) -> None:
        try:
            with transaction(self.factory) as session:
                jobs.fail(session, job_id, message)
        except DBAPIError:
            log.exception("job %s: could not record its failure; the sweep will hand its item out again", job_id)

    def _database_error(self, item: WorkItem, what: str) -> str:
        """The database failed under a stage: the item goes back to the queue (not a death, not a failure)."""
        log.exception("%s: database error; the item goes back to the queue", what)
        try:
            with transaction(self.factory) as session:
                work.release(session, token=item.token, item_id=item.id, died=False)
        except DBAPIError:
            log.warning("%s: the database is still away; the sweep re-queues the item once it answers", what)
        return f"{what}: released"


def embedding_chunks_prefix(job_id: str) -> str:
    """Where a job's embedding chunks live until its cache entry exists (the folder of its chunk keys)."""
    return artifacts.embedding_chunk_key(job_id, 0).rpartition("/")[0] + "/"


def record_failure(factory: sessionmaker[Session], fail: Callable[[Session, str], None], logger: logging.Logger,
                   what: str) -> str:
    """Log the exception being handled, store the user-safe message through ``fail`` and return "failed".
    Call it inside ``except``."""
    logger.exception("%s", what)
    with transaction(factory) as session:
        fail(session, USER_SAFE_ERROR)
    return "failed"


def _label_language(session, job_id: str) -> str | None:
    """The language a job's labels are asked in (its ``label_language``), or None."""
    return JobParams.model_validate(jobs.get_job(session, job_id).params).label_language
