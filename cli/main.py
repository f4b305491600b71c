"""``topicq``: up, web, worker, migrate, recover, users, submit, status."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import click
import requests
from sqlalchemy.orm import Session

from shared.schemas import FINISHED
from shared.settings import get_settings


@click.group()
def cli() -> None:
    """topicq: interpretable topics for large text corpora."""


@cli.command()
def up() -> None:
    """Start everything: Redis (unless TOPICQ_REDIS_URL is set), migrations, a worker and the web server."""
    from cli.supervisor import run_up

    sys.exit(run_up(get_settings()))


@cli.command()
@click.option("--workers", default=2, show_default=True, help="gunicorn worker processes.")
def web(workers: int) -> None:
    """Run the web server (gunicorn)."""
    settings = get_settings()
    _require_redis(settings)
    os.execvp(
        sys.executable,
        [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--threads", "4", "--timeout", "300",
         "--bind", f"{settings.host}:{settings.port}", "--log-level", settings.log_level.lower(),
         "--access-logfile", "-", "web.wsgi:app"],
    )


@cli.command()
@click.option("--queues", default="gpu,cpu", show_default=True,
              help="gpu (embedding, labels: loads the LLM), cpu (UMAP, HDBSCAN, saving), or both.")
@click.option("--name", default=None, help="Worker node name, unique per worker (default: topicq-QUEUES@HOST).")
def worker(queues: str, name: str | None) -> None:
    """Run one worker process: it loads its models once and runs one work item at a time."""
    from shared.queue import QUEUES

    settings = get_settings()
    _require_redis(settings)
    kinds = [q.strip() for q in queues.split(",") if q.strip()]
    if not kinds or set(kinds) - set(QUEUES):
        raise click.BadParameter(f"choose from {', '.join(QUEUES)}, comma-separated", param_hint="--queues")
    os.environ["TOPICQ_WORKER_QUEUES"] = ",".join(kinds)
    # solo pool: the models live in this process and every job reuses them (no fork, no copy per job).
    os.execvp(
        sys.executable,
        [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool", "solo",
         "--queues", ",".join(QUEUES[k] for k in kinds), "--loglevel", settings.log_level.upper(),
         "--hostname", name or f"topicq-{'-'.join(kinds)}@%h", "--without-mingle", "--without-gossip"],
    )


@cli.command()
def migrate() -> None:
    """Apply the database migrations."""
    from shared.db import migrate as apply

    settings = get_settings()
    from sqlalchemy.engine import make_url

    apply(settings)
    click.echo(f"database at head: {make_url(settings.sqlalchemy_url).render_as_string(hide_password=True)}")


@cli.command()
@click.option("--stale-minutes", default=None, type=float,
              help="Hand out work silent this long (default: TOPICQ_STALE_AFTER_SECONDS).")
def recover(stale_minutes: float | None) -> None:
    """Sweep once, as every worker does every few seconds: hand dead workers' work out again and ring for
    ready work the queue lost."""
    from cli.supervisor import sweep_once

    settings = get_settings()
    _require_redis(settings)
    stale = timedelta(minutes=stale_minutes) if stale_minutes is not None else settings.stale_job_after
    report = sweep_once(settings, stale)
    click.echo(f"ready work: {report.ready or 'none'}; rang: {report.rung or 'none'}; "
               f"re-label runs re-sent: {report.relabels}")


@cli.group()
def users() -> None:
    """Accounts, for TOPICQ_AUTH=token: each user sees only their own jobs (admins see all)."""


@users.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="May see, cancel and delete every user's jobs.")
def users_add(name: str, admin: bool) -> None:
    """Create user NAME and print their API token (shown this once; only its hash is stored)."""
    from shared import users as accounts

    with _user_session() as session:
        try:
            user, token = accounts.add_user(session, name, admin=admin)
        except accounts.UserError as exc:
            raise click.ClickException(str(exc)) from None
        session.commit()
    click.echo(f"user {user.name}{' (admin)' if admin else ''} created. API token, shown only now:")
    click.echo(token)
    click.echo("Sign in to the pages with it, or give it to the CLI and API clients: TOPICQ_TOKEN=... or "
               "'Authorization: Bearer ...'.", err=True)


@users.command("token")
@click.argument("name")
def users_token(name: str) -> None:
    """Give user NAME a new API token; the old one, and every page session opened with it, stop working."""
    from shared import users as accounts

    with _user_session() as session:
        try:
            token = accounts.rotate_token(session, name)
        except accounts.UserError as exc:
            raise click.ClickException(str(exc)) from None
        session.commit()
    click.echo(token)


@users.command("list")
def users_list() -> None:
    """List the users."""
    from shared import users as accounts

    with _user_session() as session:
        for user in accounts.list_users(session):
            click.echo(f"{user.name}\t{'admin' if user.is_admin else 'user'}\tsince {user.created_at:%Y-%m-%d}")


@contextmanager
def _user_session() -> Iterator[Session]:
    """A session on the migrated database (the users commands may run before the service ever started)."""
    from shared.db import make_engine, make_session_factory
    from shared.db import migrate as apply

    settings = get_settings()
    apply(settings)
    engine = make_engine(settings)
    try:
        with make_session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="Job name (default: the file name).")
@click.option("--min-topic-size", type=int, default=None, help="HDBSCAN min_cluster_size (default: grows with n).")
@click.option("--nr-topics", default=None, help='"auto" or a number: merge topics down after clustering.')
@click.option("--max-outlier-share", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Most outliers wanted, as a share of the documents (0.05: 5%): lowers the outlier threshold.")
@click.option("--labels/--no-labels", default=True, show_default=True, help="Generate LLM labels.")
@click.option("--label-language", default=None, help="Write the labels in this language (e.g. French).")
@click.option("--priority", type=int, default=None, help="Higher runs first (-10..10; default 0).")
@click.option("--text-column", default=None, help="CSV: the column holding the text.")
@click.option("--title-column", default=None, help="CSV: an optional title column.")
@click.option("--wait", is_flag=True, help="Show a progress bar until the job ends, then the topics.")
def submit(file: Path, name, min_topic_size, nr_topics, max_outlier_share, labels, label_language, priority,
           text_column, title_column, wait) -> None:
    """Submit FILE (.txt one document per line, .csv or .jsonl) to the running service."""
    base = get_settings().base_url
    form = {"name": name or file.name, "generate_labels": str(labels).lower()}
    for key, value in (("min_topic_size", min_topic_size), ("nr_topics", nr_topics),
                       ("max_outlier_share", max_outlier_share), ("priority", priority),
                       ("label_language", label_language),
                       ("text_column", text_column), ("title_column", title_column)):
        if value is not None:
            form[key] = str(value)
    with file.open("rb") as handle:
        response = _request("post", f"{base}/api/v1/jobs", data=form, files={"file": (file.name, handle)})
    job = response.json()
    click.echo(f"job {job['id']}: {job['n_documents']} documents queued  ({base}/jobs/{job['id']})")
    if wait:
        job = _wait(base, job["id"])
        _print_result(base, job)


@cli.command()
@click.argument("job_id")
def status(job_id: str) -> None:
    """Show a job's status, stage and progress."""
    job = _request("get", f"{get_settings().base_url}/api/v1/jobs/{job_id}").json()
    click.echo(f"{job['id']}  {job['status']}  stage={job['stage']}  {job['progress'] * 100:.0f}%  "
               f"documents={job['n_documents']}  topics={job['n_topics']}")
    if job.get("labelling"):
        click.echo(job["labelling"]["summary"])
    if job["error"]:
        click.echo(f"error: {job['error']}")


def _wait(base: str, job_id: str) -> dict:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description:<14}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn()) as bar:
        task = bar.add_task("queued", total=1.0)
        while True:
            job = _request("get", f"{base}/api/v1/jobs/{job_id}").json()
            bar.update(task, completed=job["progress"], description=job["stage"])
            if job["status"] in FINISHED:
                return job
            time.sleep(1)


def _print_result(base: str, job: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if job["status"] != "succeeded":
        console.print(f"job {job['status']}: {job['error'] or ''}")
        sys.exit(1)
    payload = _request("get", f"{base}/api/v1/jobs/{job['id']}/topics").json()
    table = Table(title=f"{len(payload['topics'])} topics, {payload['n_outliers']} outliers "
                        f"of {job['n_documents']} documents")
    for column in ("topic", "size", "label", "keywords"):
        table.add_column(column)
    for t in payload["topics"]:
        table.add_row(str(t["topic"]), str(t["size"]), t["label"], ", ".join(t["keywords"]))
    console.print(table)


def _request(method: str, url: str, **kwargs) -> requests.Response:
    token = get_settings().token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = requests.request(method, url, timeout=120, headers=headers, **kwargs)
    except requests.ConnectionError:
        raise click.ClickException(f"cannot reach topicq at {url} (is `make run` running?)") from None
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        hint = " (set TOPICQ_TOKEN to your API token)" if response.status_code == 401 else ""
        raise click.ClickException(f"{response.status_code}: {message}{hint}")
    return response


def _require_redis(settings) -> None:
    if not settings.redis_url:
        raise click.ClickException("TOPICQ_REDIS_URL is not set (or use `topicq up`, which starts a Redis)")


if __name__ == "__main__":
    cli()
