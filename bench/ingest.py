"""Submitting a large corpus as a file: the web's time and memory, streamed against the way it read one before.

    python -m bench.ingest                    # all 595,905 PyPI summaries as one .jsonl upload (~90 MB)
    python -m bench.ingest --n 50000          # the first 50,000 of them
    python -m bench.ingest --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test   # a PostgreSQL of its own

Each path runs in a fresh process on a fresh database (SQLite in a temp dir unless --postgres), through the real
app (Flask's test client: multipart encoding, werkzeug's form parser, web/submit.py, shared/jobs.py):

- ``streamed``: today's path, the upload read from werkzeug's spooled file a megabyte at a time and stored in
  batches of 5,000 rows while it is parsed;
- ``whole``: the path before issue 13, ``upload.read()``, the whole text decoded and split, every document
  parsed into one list, then stored (web/submit.py's ``docs_from_form`` as it was, patched in).

For each it prints the time of the POST, documents stored per second, and the peak growth of the process's
resident memory during the POST beside the file's size. Then, on the streamed job: reading its documents back
with ``jobs.load_documents`` (one query) and ``jobs.iter_documents`` (keyed batches), and filling the search
index (``search.index_job``, SQLite's FTS5; nothing to do on PostgreSQL).
"""

from __future__ import annotations

import argparse
import gzip
import io
import multiprocessing
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import psutil

from bench.corpora import DATA
from bench.memory import PeakRSS, cpu_description

CORPUS = DATA / "pypi_summaries.jsonl.gz"


def write_corpus(path: Path, n: int | None) -> int:
    """The first ``n`` lines of the corpus (all: None), as they are (``{"id", "text", "label"}``), to ``path``."""
    count = 0
    with gzip.open(CORPUS, "rb") as source, path.open("wb") as out:
        for line in source:
            if n is not None and count >= n:
                break
            out.write(line)
            count += 1
    return count


def whole_docs_from_form(form, upload):
    """web/submit.py's ``docs_from_form`` before the streaming reader, for a .jsonl file (the parse of
    shared/corpus.py's ``parse_jsonl`` then): the bytes, the text, its lines and the documents, all at once."""
    import json

    from shared.corpus import LINE_BREAK, CorpusError, without_nul

    text = without_nul(upload.read().decode("utf-8-sig"))
    docs = []
    for number, line in enumerate(LINE_BREAK.split(text), start=1):
        if line.strip():
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise CorpusError(f'line {number} of the JSONL file has no string field "text"')
            if body := record["text"].strip():
                docs.append((body, None))
    return docs


@contextmanager
def database(postgres: str | None, folder: Path):
    """A fresh database URL: SQLite under ``folder``, or a new database on ``postgres``'s server (dropped after)."""
    if postgres is None:
        yield f"sqlite:///{folder / 'topicq.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"topicq_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run_path(path_name: str, corpus: str, postgres: str | None, results) -> None:
    """In a fresh process: submit ``corpus`` through the app by ``path_name``; put the figures on ``results``."""
    from werkzeug.datastructures import FileStorage

    from shared import jobs, search
    from shared.db import make_engine, make_session_factory, migrate
    from shared.settings import Settings
    from web import create_app, submit

    if path_name == "whole":
        submit.docs_from_form = whole_docs_from_form
    with tempfile.TemporaryDirectory(prefix="topicq-ingest-") as tmp, database(postgres, Path(tmp)) as url:
        settings = Settings(data_dir=Path(tmp) / "data", database_url=url, redis_url="redis://127.0.0.1:1/0",
                            rate_limit_submit="1000/minute", _env_file=None)
        migrate(settings)
        app = create_app(settings)
        client = app.test_client()

        def post(data, filename: str):
            form = {"file": FileStorage(data, filename, content_type="application/x-ndjson"),
                    "generate_labels": "false"}
            return client.post("/api/v1/jobs", data=form, content_type="multipart/form-data")

        warm = post(io.BytesIO(b"\n".join(b'{"text": "warm up %d"}' % i for i in range(30))), "warm.jsonl")
        assert warm.status_code == 202, warm.get_json()
        process = psutil.Process()
        with open(corpus, "rb") as handle:
            before = process.memory_info().rss
            with PeakRSS() as peak:
                start = time.perf_counter()
                response = post(handle, "pypi.jsonl")
                seconds = time.perf_counter() - start
        assert response.status_code == 202, response.get_json()
        job = response.get_json()
        figures = {"path": path_name, "seconds": seconds, "n": job["n_documents"],
                   "growth": peak.peak - before, "peak": peak.peak}
        if path_name == "streamed":
            sessions = make_session_factory(make_engine(settings))
            with sessions() as session:
                start = time.perf_counter()
                texts = jobs.load_documents(session, job["id"])
                figures["load_documents"] = time.perf_counter() - start
                count = len(texts)
                del texts
                start = time.perf_counter()
                assert sum(len(batch) for batch in jobs.iter_documents(session, job["id"])) == count
                figures["iter_documents"] = time.perf_counter() - start
                start = time.perf_counter()
                search.index_job(session, job["id"])
                session.commit()
                figures["index_job"] = time.perf_counter() - start
        app.extensions["topicq"]["sessions"].kw["bind"].dispose()
    results.put(figures)


def measure(path_name: str, corpus: Path, postgres: str | None) -> dict:
    context = multiprocessing.get_context("spawn")  # nothing of the parent's memory in the child's figures
    results = context.Queue()
    child = context.Process(target=run_path, args=(path_name, str(corpus), postgres, results))
    child.start()
    figures = results.get()
    child.join()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help="documents (default: all 595,905)")
    parser.add_argument("--postgres", default=None, help="a PostgreSQL server URL: run on a database of its own there")
    parser.add_argument("--paths", default="streamed,whole", help="which paths, in order (default: both)")
    args = parser.parse_args()
    mib = 2**20
    with tempfile.TemporaryDirectory(prefix="topicq-corpus-") as tmp:
        corpus = Path(tmp) / "pypi.jsonl"
        n = write_corpus(corpus, args.n)
        size = corpus.stat().st_size
        print(f"{n:,} PyPI summaries, a {size / mib:.1f} MiB .jsonl upload; database: "
              f"{'PostgreSQL' if args.postgres else 'SQLite'}; {cpu_description()}; "
              f"load {psutil.getloadavg()[0]:.1f}")
        rows = [measure(name, corpus, args.postgres) for name in args.paths.split(",")]
    print(f"{'path':<9} {'seconds':>8} {'docs/s':>8} {'RSS growth MiB':>15} {'x file':>7} {'peak RSS MiB':>13}")
    for row in rows:
        print(f"{row['path']:<9} {row['seconds']:>8.1f} {row['n'] / row['seconds']:>8,.0f} "
              f"{row['growth'] / mib:>15.0f} {row['growth'] / size:>7.2f} {row['peak'] / mib:>13.0f}")
    by = {row["path"]: row for row in rows}
    if {"streamed", "whole"} <= set(by):
        print(f"streamed / whole: time {by['streamed']['seconds'] / by['whole']['seconds']:.2f}, memory growth "
              f"{by['streamed']['growth'] / max(by['whole']['growth'], 1):.2f}")
    if "streamed" in by:
        row = by["streamed"]
        print(f"reading {row['n']:,} documents back: load_documents {row['load_documents']:.1f} s, "
              f"iter_documents {row['iter_documents']:.1f} s; search.index_job {row['index_job']:.1f} s")


if __name__ == "__main__":
    main()
